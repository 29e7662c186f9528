"""One loaded copy of a model: a llama.cpp ``Llama`` and the single thread that drives it.

llama.cpp contexts are not thread-safe, so every call on a copy runs on that copy's own
one-thread executor, never on the event loop. Streams hand chunks back through an asyncio queue;
a cancel flag, checked between tokens, stops a generation whose client has gone.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from hivemind_common.errors import Invalid, Unprocessable
from hivemind_inference.settings import GpuOffload

log = logging.getLogger(__name__)
T = TypeVar("T")

# Known spellings of fill-in-the-middle tokens (StarCoder/SmolLM-style and Qwen/CodeLlama-style).
_FIM_SPELLINGS = (
    ("<fim_prefix>", "<fim_suffix>", "<fim_middle>"),
    ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
    ("<PRE>", "<SUF>", "<MID>"),
)


class GenerationCancelled(Exception):
    """Raised from the token hook (:mod:`hivemind_inference.logprobs`) when the client has gone."""


class ModelCopy:
    """A loaded GGUF (plus optional LoRA) with its version, executor and in-flight count."""

    def __init__(
        self,
        *,
        name: str,
        version: str,
        gguf: Path,
        lora: Path | None,
        n_ctx: int,
        threads: int,
        gpu: GpuOffload | None = None,
    ) -> None:
        self.name = name
        self.gpu = gpu
        self.version = version
        self.gguf = gguf
        self.lora = lora
        self.n_ctx = n_ctx
        self.threads = threads
        self.loaded_at = 0.0
        self.llama: Any = None
        self.formatter: Any = None
        self.template: str | None = None  # the GGUF's chat template (tool-call family, ...)
        self.eos_text = ""
        self.fim: tuple[int, int, int] | None = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"llama-{name}")
        # whose prompt the context holds, and each partition's saved prompt states (LRU)
        self._partition: str | None = None
        self._caches: OrderedDict[str, Any] = OrderedDict()
        self.active = 0
        self._idle = asyncio.Event()
        self._idle.set()

    # --- loading ------------------------------------------------------------------------------
    def load(self) -> None:
        """Load the GGUF (blocking; call through :meth:`run`). Raises Invalid / Unprocessable."""
        import jinja2
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        from hivemind_common.llama_buffers import configure_llama
        from hivemind_inference.tracing import TracingLlama

        configure_llama()

        for label, path in (("gguf", self.gguf), ("lora", self.lora)):
            if path is not None and not path.is_file():
                raise Invalid(f"{label} file not found: {path}", param=label)
        try:
            self.llama = TracingLlama(
                model_path=str(self.gguf),
                lora_path=str(self.lora) if self.lora else None,
                n_ctx=self.n_ctx,
                n_threads=self.threads,
                n_threads_batch=self.threads,
                verbose=False,
                **(self.gpu.llama_kwargs() if self.gpu else {}),
            )
        except (ValueError, RuntimeError, OSError, jinja2.TemplateError) as exc:
            # jinja2: llama-cpp-python compiles the GGUF's chat templates while it loads
            raise Unprocessable(
                f"llama.cpp could not load {self.gguf.name}"
                + (f" with LoRA {self.lora.name}" if self.lora else "")
                + f": {exc}",
                code="model_load_failed",
            ) from exc
        template = self.llama.metadata.get("tokenizer.chat_template")
        if template:
            vocab = self.llama._model
            self.template = template
            self.eos_text = vocab.token_get_text(self.llama.token_eos())
            # llama-cpp-python compiled this template while it loaded (a failure is above)
            self.formatter = Jinja2ChatFormatter(
                template=template,
                eos_token=self.eos_text,
                bos_token=vocab.token_get_text(self.llama.token_bos()),
            )
        self.fim = self._find_fim_tokens()
        self.loaded_at = time.time()

    def enter(self, partition: str, cache_bytes: int = 0) -> None:
        """Before a generation, on the copy's thread: the prompt states a request may resume
        from are its own partition's (tenant's, hivemind_common.partition). A request of
        another partition than the last starts from an empty context, and finds only its
        partition's saved states (``cache_bytes`` > 0: saved prompt states in RAM, so a request
        resumes from the longest saved prefix of its prompt, not only from the last one's).
        The states kept for all partitions together stay within ``cache_bytes``: only the
        current partition's cache grows, up to what the others leave, and those others are
        dropped, least recently used first, until they hold at most half."""
        if self.llama is None:
            return
        switched = partition != self._partition
        if switched:
            self.llama.reset()  # no prefix of another tenant's prompt is resumed from
            self._partition = partition
        if cache_bytes <= 0:
            if self._caches or self.llama.cache is not None:
                self._caches.clear()
                self.llama.set_cache(None)
        elif switched or self.llama.cache is None:
            self._switch_cache(partition, cache_bytes)

    def _switch_cache(self, partition: str, cache_bytes: int) -> None:
        from llama_cpp.llama_cache import LlamaRAMCache

        cache = self._caches.pop(partition, None) or LlamaRAMCache(capacity_bytes=cache_bytes)
        others = sum(c.cache_size for c in self._caches.values())
        while self._caches and others > cache_bytes // 2:
            _, dropped = self._caches.popitem(last=False)
            others -= dropped.cache_size
        self._caches[partition] = cache  # the most recently used last
        # LlamaRAMCache evicts its own oldest states past this, on every state it saves
        cache.capacity_bytes = cache_bytes - others
        while cache.cache_state and cache.cache_size > cache.capacity_bytes:
            cache.cache_state.popitem(last=False)
        self.llama.set_cache(cache)

    def _find_fim_tokens(self) -> tuple[int, int, int] | None:
        vocab = self.llama._model
        native = (vocab.token_prefix(), vocab.token_suffix(), vocab.token_middle())
        if all(t >= 0 for t in native):
            return native
        for spelling in _FIM_SPELLINGS:
            ids = [self.llama.tokenize(s.encode(), add_bos=False, special=True) for s in spelling]
            if all(len(i) == 1 for i in ids):
                return ids[0][0], ids[1][0], ids[2][0]
        return None

    def close(self) -> None:
        """Free the model (blocking); the executor is shut down after the last call."""
        llama, self.llama = self.llama, None
        if llama is not None:
            llama.close()
        self.executor.shutdown(wait=False)

    # --- running ------------------------------------------------------------------------------
    def acquire(self) -> None:
        self.active += 1
        self._idle.clear()

    def release(self) -> None:
        self.active -= 1
        if self.active <= 0:
            self.active = 0
            self._idle.set()

    async def drained(self) -> None:
        """Return once no request is running or waiting on this copy."""
        await self._idle.wait()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on this copy's thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, fn, *args)

    async def stream(
        self, make_iter: Callable[[], Iterator[dict[str, Any]]], cancel: threading.Event
    ) -> AsyncIterator[dict[str, Any]]:
        """Drive a llama.cpp chunk iterator on this copy's thread; stop when ``cancel`` is set."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        def put(kind: str, item: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (kind, item))
            except RuntimeError:  # the loop is gone (shutdown): nobody is listening
                cancel.set()

        def work() -> None:
            chunks: Iterator[dict[str, Any]] | None = None
            try:
                chunks = make_iter()
                for chunk in chunks:
                    if cancel.is_set():
                        break
                    put("chunk", chunk)
                put("end", None)
            except Exception as exc:
                put("error", exc)
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()

        future = loop.run_in_executor(self.executor, work)
        try:
            while True:
                kind, item = await queue.get()
                if kind == "chunk":
                    yield item
                elif kind == "error":
                    raise item
                else:
                    break
        finally:
            cancel.set()
            if not future.done():
                # the thread finishes its current token, sees the flag and stops
                await asyncio.shield(future)
