"""Micro-batching: concurrent requests share one encoder call.

Requests queue up; one worker takes the first, then gathers whatever else is queued and, when
callers have been arriving together, whatever arrives within a short window (up to
``max_batch`` texts; a lone caller does not wait for the window). It encodes them in one call
on an encoder thread and hands each request its rows. With batching off, every request is its
own call on the same threads, so the two modes differ only in batching.

``calls`` encoder calls may run at once (the service runs two where the encoder has a pool of
pass workers): while one call's passes run, the next call is gathered and tokenized and its
passes queue behind, so the workers never wait for the gap between two calls. With one call
at a time the service's two workers were busy 1.65 of 2 cores during an ingest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from prometheus_client import Histogram

from hivemind_common.errors import Unavailable

log = logging.getLogger(__name__)

EncodeFn = Callable[[list[str]], np.ndarray]
T = TypeVar("T")
DRAIN_S = 30.0  # how long close() waits for the encoder call in flight

BATCH_TEXTS = Histogram(
    "hivemind_embedding_batch_texts",
    "Texts per encoder call.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
ENCODE_SECONDS = Histogram(
    "hivemind_embedding_encode_seconds",
    "Time of one encoder call.",
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


@dataclass
class _Job:
    texts: list[str]
    future: asyncio.Future[np.ndarray] = field(repr=False)


class MicroBatcher:
    """Collects concurrent ``embed`` calls into batches; encoding never runs on the loop."""

    def __init__(
        self,
        encode: EncodeFn,
        *,
        enabled: bool = True,
        window_s: float = 0.004,
        max_batch: int = 64,
        calls: int = 1,
    ) -> None:
        self._encode = encode
        self.enabled = enabled
        self.window_s = window_s
        self.max_batch = max_batch
        self.calls = max(1, calls)
        self._executor = ThreadPoolExecutor(max_workers=self.calls, thread_name_prefix="encoder")
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._slots = asyncio.Semaphore(self.calls)
        self.batches = 0
        self.texts = 0
        self._company = False  # did the last batch gather more than one request?
        self._gathering: list[_Job] = []  # the jobs being gathered for the next call
        self._calling: dict[asyncio.Task[None], list[_Job]] = {}  # the calls being encoded

    def _timed(self, texts: list[str]) -> np.ndarray:
        """Encode on the worker thread, observing batch size and time."""
        BATCH_TEXTS.observe(len(texts))
        with ENCODE_SECONDS.time():
            return self._encode(texts)

    async def start(self) -> None:
        if self.enabled and self._worker is None:
            self._worker = asyncio.create_task(self._run(), name="embedding-batcher")

    async def close(self) -> None:
        if self._worker is not None:
            worker, self._worker = self._worker, None
            worker.cancel()
            # asyncio.wait, not a suppressed await: a cancel of close() itself goes on up
            await asyncio.wait([worker])
            if not worker.cancelled() and worker.exception() is not None:
                log.error("the embedding batcher had stopped", exc_info=worker.exception())
        # the calls in flight as well as the queued jobs: their tasks are gone, nothing else
        # would answer them
        waiting = list(self._gathering)
        for task, jobs in list(self._calling.items()):
            task.cancel()
            waiting.extend(jobs)
        while not self._queue.empty():
            waiting.append(self._queue.get_nowait())
        for job in waiting:
            if not job.future.done():
                job.future.set_exception(Unavailable("embedding service is shutting down"))
        self._executor.shutdown(wait=False, cancel_futures=True)
        # the calls in flight, if any, end before the encoder behind them is closed
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_S):
                await asyncio.to_thread(self._executor.shutdown)

    async def on_encoder_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on an encoder thread, queued behind the calls waiting for one. What
        shares the encoder's tokenizer (a token count) takes the encoder's tokenizer lock as
        well: with two calls at once, another thread may be encoding meanwhile."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def embed(self, texts: list[str]) -> np.ndarray:
        """Rows for ``texts``, in order."""
        loop = asyncio.get_running_loop()
        if not self.enabled:
            self.batches += 1
            self.texts += len(texts)
            return await loop.run_in_executor(self._executor, self._timed, texts)
        if self._worker is None:
            raise Unavailable("embedding batcher is not running")
        job = _Job(texts, loop.create_future())
        await self._queue.put(job)
        return await job.future

    async def _gather(self, first: _Job) -> list[_Job]:
        """The first job, whatever is queued, and (only when callers have been arriving
        together) whatever comes within the window: a lone caller never waits for company."""
        jobs = [first]
        self._gathering = jobs  # close() answers them should it come while they gather
        size = len(first.texts)
        loop = asyncio.get_running_loop()
        window = self.window_s if self._company else 0.0
        deadline = loop.time() + window
        while size < self.max_batch:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel
                    # (close()) that lands as the item arrives, and the loop would go on
                    async with asyncio.timeout(remaining):
                        job = await self._queue.get()
                except TimeoutError:
                    break
            jobs.append(job)
            size += len(job.texts)
        self._company = len(jobs) > 1
        return jobs

    async def _run(self) -> None:
        while True:
            await self._slots.acquire()  # a call's place, released when its call ends
            try:
                jobs = await self._gather(await self._queue.get())
            except BaseException:
                self._slots.release()
                raise
            self._gathering = []
            live = [j for j in jobs if not j.future.done()]
            if not live:
                self._slots.release()
                continue
            task = asyncio.create_task(self._call(live), name="embedding-call")
            self._calling[task] = live
            task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._calling.pop(task, None)
        self._slots.release()

    async def _call(self, live: list[_Job]) -> None:
        """One encoder call for ``live``'s texts; each job gets its rows, or the failure."""
        flat = [t for j in live for t in j.texts]
        try:
            rows = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._timed, flat
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # hand the failure to every waiting request
            log.exception("encoder failed on a batch of %d texts", len(flat))
            for j in live:
                if not j.future.done():
                    j.future.set_exception(Unavailable(f"encoder failed: {type(exc).__name__}"))
            return
        self.batches += 1
        self.texts += len(flat)
        start = 0
        for j in live:
            end = start + len(j.texts)
            if not j.future.done():
                j.future.set_result(rows[start:end])
            start = end
