"""Named models, their bounded admission queues and the hot-swap of a serving copy.

A request is *admitted* to a model (or refused with 429 when the model's queue is full), pinned
to the copy serving at that moment, and released when its work is done. A swap loads the new copy
beside the serving one, smoke-tests it, switches the pointer (atomic: one assignment on the event
loop) and returns: the old copy drains in a kept background task and is freed once it has no
request left, so the caller learns that the new copy serves as soon as it does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hivemind_common.errors import (
    Conflict,
    HivemindError,
    NotFound,
    TooManyRequests,
    Unprocessable,
)
from hivemind_inference import metrics
from hivemind_inference.engine import ModelCopy
from hivemind_inference.settings import InferenceSettings, ModelSpec

log = logging.getLogger(__name__)

OnSwap = Callable[[str, str | None], Awaitable[None]]  # version None: switching now


@dataclass(frozen=True)
class Placement:
    """What a model should serve: a GGUF, an optional LoRA and the version they are."""

    gguf: Path
    lora: Path | None
    version: str


@dataclass
class SwapResult:
    name: str
    version: str
    previous_version: str
    swap_ms: float
    load_ms: float
    smoke_text: str
    draining: int = 0  # requests still running on the old copy when the swap answered


class ModelSlot:
    """One model name: the copy serving now, how many requests it has admitted, its swap lock."""

    def __init__(self, spec: ModelSpec, copy: ModelCopy, *, max_queue: int) -> None:
        self.spec = spec
        self.current = copy
        self.max_queue = max_queue
        self.pending = 0
        self.swap_lock = asyncio.Lock()
        self.swapping_to: str | None = None

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[ModelCopy]:
        """Pin the serving copy for one request; 429 with Retry-After when the queue is full."""
        if self.pending >= self.max_queue:
            metrics.REJECTED.labels(self.spec.name).inc()
            raise TooManyRequests(
                f"model {self.spec.name!r} has {self.pending} requests queued (max "
                f"{self.max_queue}); retry shortly",
                retry_after=1.0,
            )
        copy = self.current
        self.pending += 1
        metrics.QUEUE_DEPTH.labels(self.spec.name).set(self.pending)
        copy.acquire()
        try:
            yield copy
        finally:
            copy.release()
            self.pending -= 1
            metrics.QUEUE_DEPTH.labels(self.spec.name).set(self.pending)

    @asynccontextmanager
    async def pin(self) -> AsyncIterator[ModelCopy]:
        """Pin the serving copy without queueing (tokenizer-only work, off the model thread)."""
        copy = self.current
        copy.acquire()
        try:
            yield copy
        finally:
            copy.release()

    def describe(self) -> dict[str, Any]:
        c = self.current
        return {
            "name": self.spec.name,
            "aliases": list(self.spec.aliases),
            "version": c.version,
            "gguf": str(c.gguf),
            "lora": str(c.lora) if c.lora else None,
            "n_ctx": c.n_ctx,
            "threads": c.threads,
            "n_gpu_layers": c.gpu.n_gpu_layers if c.gpu else 0,
            "loaded_at": c.loaded_at,
            "queue_depth": self.pending,
            "max_queue": self.max_queue,
            "fim": c.fim is not None,
            "swapping_to": self.swapping_to,
        }


class LoadedModels:
    """Every served model by name and alias."""

    def __init__(self, settings: InferenceSettings, *, on_swap: OnSwap | None = None) -> None:
        self.settings = settings
        self.slots: dict[str, ModelSlot] = {}
        self.aliases: dict[str, str] = {}
        self.on_swap = on_swap
        self.draining: set[asyncio.Task[None]] = set()  # old copies being drained, then freed

    def _new_copy(
        self, spec: ModelSpec, *, gguf: Path, lora: Path | None, version: str
    ) -> ModelCopy:
        return ModelCopy(
            name=spec.name,
            version=version,
            gguf=gguf,
            lora=lora,
            n_ctx=spec.n_ctx,
            threads=self.settings.threads_for(spec),
            gpu=self.settings.gpu_for(spec),
        )

    async def load_all(self, chosen: dict[str, Placement] | None = None) -> None:
        """Load every configured model (start-up).

        ``chosen`` names what a model should serve instead of its configured GGUF (the model
        registry's serving version); when that cannot be loaded the configured one serves and
        the caller's reconciler tries again later.
        """
        for spec in self.settings.model_specs():
            configured = Placement(spec.gguf, spec.lora, spec.version)
            wanted = (chosen or {}).get(spec.name, configured)
            copy = self._new_copy(spec, gguf=wanted.gguf, lora=wanted.lora, version=wanted.version)
            try:
                await copy.run(copy.load)
            except HivemindError as exc:
                if wanted == configured:
                    raise
                log.error(
                    "model %s: could not load version %s (%s); serving %s until it can be",
                    spec.name,
                    wanted.version,
                    exc.message,
                    configured.version,
                )
                await asyncio.to_thread(copy.close)
                copy = self._new_copy(spec, gguf=spec.gguf, lora=spec.lora, version=spec.version)
                await copy.run(copy.load)
            self.slots[spec.name] = ModelSlot(spec, copy, max_queue=self.settings.max_queue)
            for alias in spec.aliases:
                self.aliases[alias] = spec.name
            log.info("serving %s version %s from %s", spec.name, copy.version, copy.gguf)
            metrics.mark_served(spec.name, copy.version)
            if self.on_swap is not None:
                await self.on_swap(spec.name, copy.version)

    def resolve(self, model: str | None) -> ModelSlot:
        """The slot for a model name or alias; ``None`` or ``"default"`` is the first model."""
        if not model or (model == "default" and "default" not in self.slots):
            return next(iter(self.slots.values()))
        name = self.aliases.get(model, model)
        slot = self.slots.get(name)
        if slot is None:
            known = ", ".join(sorted([*self.slots, *self.aliases]))
            raise NotFound(
                f"the model {model!r} does not exist (served: {known})",
                code="model_not_found",
                param="model",
            )
        return slot

    async def close(self) -> None:
        for task in list(self.draining):
            task.cancel()
        if self.draining:
            await asyncio.gather(*self.draining, return_exceptions=True)
        for slot in self.slots.values():
            await asyncio.to_thread(slot.current.close)

    async def swap(self, name: str, *, gguf: Path, lora: Path | None, version: str) -> SwapResult:
        """Load, smoke-test, switch; the old copy drains and is freed in the background.

        On any failure the serving copy stays.
        """
        slot = self.resolve(name)
        if slot.swap_lock.locked():
            raise Conflict(f"model {slot.spec.name!r} is already being swapped", code="swap_busy")
        async with slot.swap_lock:
            slot.swapping_to = version
            try:
                return await self._swap_locked(slot, gguf=gguf, lora=lora, version=version)
            finally:
                slot.swapping_to = None

    async def _swap_locked(
        self, slot: ModelSlot, *, gguf: Path, lora: Path | None, version: str
    ) -> SwapResult:
        started = time.perf_counter()
        fresh = self._new_copy(slot.spec, gguf=gguf, lora=lora, version=version)
        try:
            await fresh.run(fresh.load)
            load_ms = (time.perf_counter() - started) * 1000
            smoke = await fresh.run(self._smoke_test, fresh)
        except BaseException:
            metrics.SWAPS.labels(slot.spec.name, "failed").inc()
            await asyncio.to_thread(fresh.close)
            raise
        old = slot.current
        if self.on_swap is not None:
            await self.on_swap(slot.spec.name, None)  # caches stop trusting the old version
        slot.current = fresh  # the switch: new requests pin the fresh copy from here on
        swap_ms = (time.perf_counter() - started) * 1000
        metrics.SWAPS.labels(slot.spec.name, "ok").inc()
        metrics.SWAP_SECONDS.labels(slot.spec.name).observe(swap_ms / 1000)
        metrics.mark_served(slot.spec.name, version, previous=old.version)
        log.info("model %s: %s -> %s in %.0f ms", slot.spec.name, old.version, version, swap_ms)
        if self.on_swap is not None:
            await self.on_swap(slot.spec.name, version)
        task = asyncio.create_task(self._retire(old), name=f"drain-{old.name}-{old.version}")
        self.draining.add(task)
        task.add_done_callback(self.draining.discard)
        return SwapResult(
            name=slot.spec.name,
            version=version,
            previous_version=old.version,
            swap_ms=round(swap_ms, 1),
            load_ms=round(load_ms, 1),
            smoke_text=smoke,
            draining=old.active,
        )

    async def _retire(self, old: ModelCopy) -> None:
        """Drain the old copy, then free it (a kept task; on shutdown, freed at once)."""
        try:
            await self._drain(old)
        finally:
            # on the copy's own thread: a generation still running there finishes first
            await old.run(old.close)
            log.info("model %s: freed version %s", old.name, old.version)

    async def _drain(self, old: ModelCopy) -> None:
        """Wait for the old copy's requests; past the deadline, for its thread to be idle."""
        try:
            await asyncio.wait_for(old.drained(), self.settings.drain_timeout_s)
        except TimeoutError:
            log.warning(
                "model %s version %s still has %d requests after %.0fs; freeing it once its "
                "thread is idle",
                old.name,
                old.version,
                old.active,
                self.settings.drain_timeout_s,
            )
            await old.run(lambda: None)  # the copy's one thread has finished its current job

    def _smoke_test(self, copy: ModelCopy) -> str:
        """A short greedy generation must end on a stop token and say something (blocking)."""
        result = copy.llama.create_chat_completion(
            [{"role": "user", "content": self.settings.smoke_prompt}],
            max_tokens=self.settings.smoke_max_tokens,
            temperature=0.0,
        )
        choice = result["choices"][0]
        text = (choice["message"].get("content") or "").strip()
        if choice.get("finish_reason") != "stop":
            raise Unprocessable(
                f"smoke test failed: no stop token within {self.settings.smoke_max_tokens} "
                f"tokens (finish_reason={choice.get('finish_reason')!r}); output: {text[:120]!r}",
                code="smoke_test_failed",
            )
        if not text:
            raise Unprocessable(
                "smoke test failed: the model answered nothing", code="smoke_test_failed"
            )
        return text
