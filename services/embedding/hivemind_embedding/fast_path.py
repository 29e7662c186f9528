"""A frozen TorchScript copy of the encoder, in the serving precision, for every request.

Eager PyTorch spends much of a short text's encode on per-operator overhead and, under bfloat16
autocast, on casting every weight again on every call. A graph traced under the same autocast
and frozen (``torch.jit.optimize_for_inference``: the weights' casts folded into constants,
oneDNN-prepacked linears) removes both with autocast's numerics (bfloat16 matmuls, float32
norms). Measured here (AMD EPYC, AVX512-BF16, 2 threads, short queries): one text 4.8 ms (float32
trace) -> 2.2 ms, 16 texts 1.6 -> 0.6 ms a text, and 13% more README paragraphs a second than
eager autocast, with vectors within cosine 0.99998 of float32's.

A call's texts are tokenized once and encoded in passes of ``sub_batch`` texts of like lengths
in word pieces, so a short text is never padded to a long one's length. (Sorting by characters,
as sentence-transformers does, padded the repository's chunks, code beside prose, by 13% more
pieces than they hold; by pieces it is 0.2%, and the chunks encode ~8% faster.)

Passes of two or more texts can also run a TorchInductor-compiled copy (``compile_later``),
built on a thread of its own after start while the traced copy answers: C++ kernels fuse the
norms, GELU, bias adds and casts that the traced graph runs one operator at a time, and
attention runs as one flash-attention kernel. Same autocast numerics, probe-checked the same
way; the repository's docs and code chunks (~150 word pieces) went from 117-140 to 205-208 a
second here (Intel Xeon with AMX, 2 threads). A pass of one text (a query) stays traced: a size
of 1 is a shape of its own, and a recompile would stall a request for half a minute.

Only the plain layout is traced: a Hugging Face transformer, mean pooling, optional
normalisation (all-MiniLM-L6-v2 and its kin). Anything else, a failed trace, or a traced copy
that disagrees with the eager float32 model on probe texts leaves the fast path off.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import shutil
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, Literal

import numpy as np

log = logging.getLogger(__name__)

PROBES = [
    "which port does the local redis listen on",
    "a longer probe sentence, with punctuation; numbers 6379 and 5432, and naïve café 日本語",
    "x",
]
CompileState = Literal["off", "building", "on", "failed"]


def compiler_name() -> str:
    """The C++ compiler TorchInductor would call."""
    return os.environ.get("CXX") or "g++"


def has_compiler() -> bool:
    return shutil.which(compiler_name()) is not None


def _is_recompile(exc: BaseException) -> bool:
    """A refused recompile: torch raises a RuntimeError under the ``fail_on_recompile`` stance
    (RecompileError where dynamo's ``error_on_recompile`` is set)."""
    from torch._dynamo.exc import RecompileError

    if isinstance(exc, RecompileError):
        return True
    return isinstance(exc, RuntimeError) and "Detected recompile" in str(exc)


_stance_lock = threading.Lock()
_stance_users = 0
_stance_scope: Any = None


@contextlib.contextmanager
def _refusing_recompiles() -> Iterator[None]:
    """TorchDynamo's ``fail_on_recompile`` stance while any thread runs the compiled copy.

    The stance is one setting for the whole process, not a thread's: two passes entering and
    leaving ``set_stance`` on their own could restore each other's saved stance in the wrong
    order. The first pass in sets it, the last one out restores it."""
    import torch

    global _stance_users, _stance_scope
    with _stance_lock:
        if _stance_users == 0:
            scope = torch.compiler.set_stance("fail_on_recompile")
            scope.__enter__()
            _stance_scope = scope
        _stance_users += 1
    try:
        yield
    finally:
        with _stance_lock:
            _stance_users -= 1
            if _stance_users == 0:
                scope, _stance_scope = _stance_scope, None
                scope.__exit__(None, None, None)


# how close the traced copy's vectors must be to the eager float32 model's on the probes
MIN_PROBE_COSINE = {"float32": 0.9999, "bfloat16": 0.9995}


def _plain_layout(model: Any) -> bool:
    names = [type(m).__name__ for m in model]
    if names not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        return False
    pooling = model[1]
    mode = getattr(pooling, "pooling_mode", None)  # sentence-transformers 5: a string
    if mode is None:  # older releases: one flag per mode
        mode = "mean" if getattr(pooling, "pooling_mode_mean_tokens", False) else ""
    include_prompt = getattr(pooling, "include_prompt", True)
    return mode == "mean" and include_prompt and hasattr(model[0], "auto_model")


def _pooled(transformer: Any, autocast: bool = False, lengths: bool = False) -> Any:
    """The transformer, mean pooling and normalisation as one module (``autocast``: its forward
    runs under bfloat16 autocast itself, so a compiled graph holds the casts; ``lengths``: each
    text's length goes to the attention function, as the AMX kernel needs)."""
    import contextlib

    import torch

    from hivemind_embedding.amx_attention import LENGTHS

    lengths_key = LENGTHS if lengths else ""

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            scope = (
                torch.autocast("cpu", dtype=torch.bfloat16)
                if autocast
                else contextlib.nullcontext()
            )
            extra = {lengths_key: attention_mask.sum(1)} if lengths_key else {}
            with scope:
                hidden = self.transformer(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    token_type_ids=token_type_ids,
                    **extra,
                ).last_hidden_state.float()
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, dim=1)

    return Pooled()


class FastPath:
    """Traced transformer + mean pooling + normalisation, weights in ``precision``."""

    def __init__(
        self,
        module: Any,
        tokenizer: Any,
        max_length: int,
        *,
        sub_batch: int = 16,
        workers: int = 1,
    ) -> None:
        self._module = module
        self._tokenizer = tokenizer
        self._max_length = max_length
        self._pad_id = int(getattr(tokenizer, "pad_token_id", None) or 0)
        self.sub_batch = max(1, sub_batch)
        self.workers = max(1, workers)
        # passes of one call run here side by side, one per worker (encode); made on first use
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._compiled: Any = None  # the compiled copy, once built and checked (compile_later)
        # off (never asked for, or no compiler), building, on, failed (or turned off after a
        # failure while serving)
        self.compile_state: CompileState = "off"
        self.compiling: threading.Thread | None = None
        # the compiled copy's attention: torch's ("sdpa") or the AMX kernel ("amx")
        self.attention = "sdpa"
        self._probe_ref: np.ndarray | None = None  # the eager float32 model's probe vectors
        # the shared tokenizer keeps its truncation and padding settings on itself: two calls
        # tokenizing at once (the service runs two encoder calls side by side) or a token
        # count beside a call would change them under each other
        self.tokenizer_lock = threading.Lock()

    @classmethod
    def build(
        cls, model: Any, *, precision: str = "float32", sub_batch: int = 16, workers: int = 1
    ) -> FastPath | None:
        """The fast path for ``model`` (a SentenceTransformer), or None where it cannot be;
        ``workers``: passes of one call encoded side by side (see encode)."""
        if not _plain_layout(model):
            log.info("embedding fast path off: not a transformer + mean pooling layout")
            return None
        try:
            fast = cls._trace(model, precision, sub_batch)
            eager = np.asarray(
                model.encode(PROBES, convert_to_numpy=True, normalize_embeddings=True)
            )
            cosine = float(np.min(np.sum(fast.encode(PROBES) * eager, axis=1)))
        except Exception:  # a model the tracer cannot follow: stay eager
            log.warning("embedding fast path off: tracing failed", exc_info=True)
            return None
        if cosine < MIN_PROBE_COSINE.get(precision, MIN_PROBE_COSINE["float32"]):
            log.warning("embedding fast path off: traced copy disagrees (cosine %.6f)", cosine)
            return None
        fast._probe_ref = eager
        fast.workers = max(1, workers)  # after the probes: a copy refused starts no threads
        log.info("embedding fast path on (%s)", precision)
        return fast

    @property
    def compiled(self) -> bool:
        """Whether passes of two or more texts run the compiled copy."""
        return self._compiled is not None

    def compile_later(
        self, model: Any, precision: str = "float32", *, amx_attention: bool = True
    ) -> threading.Thread | None:
        """Compile the encoder with TorchInductor on a thread of its own; the traced copy
        answers meanwhile, and keeps answering if compiling fails or the result disagrees.
        None where no C++ compiler is installed (the service images carry none).
        ``amx_attention``: its attention runs the AMX kernel where it can (amx_attention.py),
        else (or should that copy fail) torch's."""
        if not has_compiler():
            log.info("embedding compiled path off: no C++ compiler (%s) on PATH", compiler_name())
            return None
        self.compile_state = "building"
        self.compiling = threading.Thread(
            target=self._compile_either,
            args=(model, precision, amx_attention),
            name="embedding-compile",
            daemon=True,
        )
        self.compiling.start()
        return self.compiling

    def _compile_either(self, model: Any, precision: str, amx_attention: bool) -> None:
        """The compiled copy with the AMX attention where it can run, else with torch's; and
        should that fail too, without the C++ wrapper (this module's first compiled copy)."""
        transformer = model[0].auto_model
        if amx_attention and precision == "bfloat16":
            try:
                from hivemind_embedding import amx_attention as amx

                fused, why = amx.prepared(transformer, compiler_name())
            except Exception as exc:  # never leave the state at "building"
                fused, why = None, f"{type(exc).__name__}: {exc}"
            if fused is not None:
                self._compile(fused, precision, attention="amx")
                if self.compile_state == "on":
                    return
                log.warning("embedding compiled copy failed with the AMX attention; again without")
                self.compile_state = "building"
            else:
                log.info("embedding AMX attention off: %s", why)
        self._compile(transformer, precision)
        if self.compile_state != "on":
            log.warning("embedding compiled copy failed with its C++ wrapper; again without")
            self.compile_state = "building"
            self._compile(transformer, precision, cpp_wrapper=False)

    def _compile(
        self, transformer: Any, precision: str, *, attention: str = "sdpa", cpp_wrapper: bool = True
    ) -> None:
        import torch
        import torch._inductor.config as inductor

        started = time.monotonic()
        try:
            inductor.freezing = True  # weights as constants: their bfloat16 casts folded once
            inductor.compile_threads = 1  # no pool of compile workers beside the service
            # the graph's wrapper in C++ too, not Python: a pass calls its ~100 kernels without
            # going back to the interpreter between them, so two passes on two threads stop
            # queueing for the GIL at every kernel (1.93 -> 1.99 of 2 cores busy, 194-215 ->
            # 217-222 texts/s in one process alternating the two copies; same kernels)
            inductor.cpp_wrapper = cpp_wrapper
            module = _pooled(
                transformer, autocast=precision == "bfloat16", lengths=attention == "amx"
            ).eval()
            compiled = torch.compile(module, dynamic=True)
            # two shapes: the batch and length dimensions are compiled as sizes, not constants
            # (a pass of one text stays on the traced copy: a size of 1 is a shape of its own)
            # its own tokenizer: the encoder's thread may be using the shared one meanwhile
            tokenizer = copy.deepcopy(self._tokenizer)
            for texts in (PROBES, PROBES[:2]):
                self._run(compiled, texts, tokenizer)
            vectors = self._run(compiled, PROBES, tokenizer)
            assert self._probe_ref is not None
            cosine = float(np.min(np.sum(vectors * self._probe_ref, axis=1)))
        except Exception:  # a compiler that fails, a model inductor cannot follow, ...
            log.warning("embedding compiled path off: compiling failed", exc_info=True)
            self.compile_state = "failed"
            return
        if cosine < MIN_PROBE_COSINE.get(precision, MIN_PROBE_COSINE["float32"]):
            log.warning("embedding compiled path off: it disagrees (cosine %.6f)", cosine)
            self.compile_state = "failed"
            return
        self.attention = attention
        self._compiled = compiled
        self.compile_state = "on"
        log.info("embedding compiled path on (%s, %.0f s)", precision, time.monotonic() - started)

    @classmethod
    def _trace(cls, model: Any, precision: str = "float32", sub_batch: int = 16) -> FastPath:
        import contextlib

        import torch

        tokenizer = model.tokenizer
        max_length = int(getattr(model, "max_seq_length", 256) or 256)
        example = tokenizer(PROBES[:2], padding=True, return_tensors="pt")
        if "token_type_ids" not in example:
            raise ValueError("the tokenizer gives no token_type_ids")
        # passes are padded here (FastPath._forward): on the right, one segment of type 0
        if getattr(tokenizer, "padding_side", "right") != "right" or bool(
            example["token_type_ids"].any()
        ):
            raise ValueError("the tokenizer pads on the left or gives other token types")
        # traced under autocast, the graph casts to bfloat16 where autocast would (matmuls),
        # keeps float32 where it would (norms, softmax); freezing folds the weights' casts
        autocast = (
            torch.autocast("cpu", dtype=torch.bfloat16)
            if precision == "bfloat16"
            else contextlib.nullcontext()
        )
        with torch.no_grad(), autocast, warnings.catch_warnings():
            # the tracer warns about every shape-dependent branch it fixes; the probe
            # comparison in build() is what decides whether the trace is right
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(
                _pooled(model[0].auto_model).eval(),
                (example["input_ids"], example["attention_mask"], example["token_type_ids"]),
                check_trace=False,
            )
            frozen = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
        return cls(frozen, tokenizer, max_length, sub_batch=sub_batch)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text, in passes of like lengths in word
        pieces (the module's docstring says why not characters), run side by side on
        ``workers`` threads where a call has more than one."""
        pieces = self._pieces(texts)
        passes = self._plan(pieces)
        pool = self._workers_pool()
        if pool is None:
            if len(passes) == 1:
                return self._pass(pieces)
            results = [self._pass([pieces[i] for i in part]) for part in passes]
        else:
            # every pass on the pool, a call of one pass too: two calls at once (the service
            # runs two, so that one tokenizes while the other's passes run) never use more
            # threads than the workers. Longest first: a worker that takes a short pass last
            # ends with the others, where the pool's order left one worker running the
            # longest pass alone at the end of each call (1.81 -> 1.87 of 2 cores busy).
            order = sorted(range(len(passes)), key=lambda j: -self._cost(pieces, passes[j]))
            futures = {j: pool.submit(self._pass, [pieces[i] for i in passes[j]]) for j in order}
            # every pass over before this call returns or raises: none still runs beside
            # whatever the caller does next (the eager model, after a failure)
            wait(futures.values())
            results = [futures[j].result() for j in range(len(passes))]
        if len(passes) == 1:
            return results[0]
        rows = np.empty((len(texts), results[0].shape[1]), dtype=np.float32)
        for part, out in zip(passes, results, strict=True):
            rows[part] = out
        return rows

    @staticmethod
    def _cost(pieces: list[list[int]], part: list[int]) -> int:
        """A pass's word pieces, padding included (what its time follows)."""
        return len(part) * max(len(pieces[i]) for i in part)

    def _plan(self, pieces: list[list[int]]) -> list[list[int]]:
        """The passes of one call: row numbers sorted by word pieces, cut in runs of at most
        ``sub_batch``, and small enough that every worker gets one; two texts at least, so a
        few texts are not cut into passes of one (those run the traced copy)."""
        count = len(pieces)
        size = min(self.sub_batch, max(2, math.ceil(count / self.workers)))
        if count <= size:
            return [list(range(count))]
        order = sorted(range(count), key=lambda i: len(pieces[i]))
        return [order[start : start + size] for start in range(0, count, size)]

    def _workers_pool(self) -> ThreadPoolExecutor | None:
        if self.workers == 1:
            return None
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="encoder-pass")
            return self._pool

    def close(self) -> None:
        """Stop the pass workers once their passes are done (a later encode starts them
        again). The service drains its encoder thread first, so none is running then."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def _pieces(self, texts: list[str], tokenizer: Any = None) -> list[list[int]]:
        """Each text's word-piece ids, special tokens included, cut at the model's limit
        (``tokenizer``: a private copy; the shared one is used under its lock)."""
        if tokenizer is None:
            with self.tokenizer_lock:
                return self._tokenize(self._tokenizer, texts)
        return self._tokenize(tokenizer, texts)

    def _tokenize(self, tokenizer: Any, texts: list[str]) -> list[list[int]]:
        return list(
            tokenizer(
                texts, truncation=True, max_length=self._max_length, padding=False,
                return_attention_mask=False, return_token_type_ids=False,
            )["input_ids"]
        )  # fmt: skip

    def _pass(self, pieces: list[list[int]]) -> np.ndarray:
        if self._compiled is not None and len(pieces) > 1:
            rows = self._try_compiled(pieces)
            if rows is not None:
                return rows
        return self._forward(self._module, pieces)

    def _try_compiled(self, pieces: list[list[int]]) -> np.ndarray | None:
        """The compiled copy's rows, or None: a shape its graph does not cover is refused (not
        a recompile of half a minute under a request) and that pass goes to the traced copy."""
        compiled = self._compiled  # read once: another pass may turn it off meanwhile
        if compiled is None:
            return None
        try:
            with _refusing_recompiles():
                return self._forward(compiled, pieces)
        except Exception as exc:
            if _is_recompile(exc):
                log.debug("a pass of %d texts went to the traced copy: %s", len(pieces), exc)
                return None
            log.exception("the compiled encoder failed; the traced copy answers from now on")
            self._compiled = None
            self.compile_state = "failed"
            self.attention = "sdpa"
            return None

    def _run(self, module: Any, texts: list[str], tokenizer: Any = None) -> np.ndarray:
        """``texts`` through ``module`` in one pass (the compile thread's probes)."""
        return self._forward(module, self._pieces(texts, tokenizer))

    def _forward(self, module: Any, pieces: list[list[int]]) -> np.ndarray:
        """One pass: the ids padded on the right to the longest (a BERT layout: one segment,
        so every token type is 0), through ``module``."""
        import torch

        width = max(len(ids) for ids in pieces)
        input_ids = np.full((len(pieces), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(pieces), width), dtype=np.int64)
        for row, ids in enumerate(pieces):
            input_ids[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1
        tensors = [torch.from_numpy(a) for a in (input_ids, mask, np.zeros_like(mask))]
        with torch.no_grad():
            out = module(*tensors)
        return np.asarray(out.float().numpy(), dtype=np.float32)
