"""Attention in AMX tiles for the compiled copy, where the CPU has them.

Inside a pass of the compiled copy, attention took 31-43% of the time (12 heads of 32
dimensions over ~150 positions): torch's flash-attention kernel for the CPU runs each head as
blocks of small matrix products and exponentials, at ~0.1 TFLOP/s where the linears reach ~2.
``attention_amx.c`` does one (text, head) at a time in AMX tiles: S = Q K^T in 16x16 tiles,
the softmax over the text's own keys in AVX-512, O = P V in tiles. The numerics are the flash
kernel's (bfloat16 products, float32 scores, sums and accumulation, P rounded to bfloat16 for
the second product), and a text's padding is skipped instead of masked.

Measured here (Intel Xeon with AMX, one thread; torch 2.13): one layer's attention for 8 texts
of 150 word pieces 3.0 -> 1.4 ms, outputs as close to float32's as the flash kernel's (largest
difference 0.0199 both). The repository's chunks, 64 to a call on two workers: 196-220 ->
272-280 texts/s, vectors within a mean 1 - cosine of 1.45e-5 of the eager float32 model's
(1.45e-5 with the flash kernel too).

It is used only where every part holds: Linux on x86-64 with ``amx_tile``, ``amx_bf16`` and
AVX-512 (with BF16), a bfloat16 serving precision, heads of 32, 64, 96 or 128 dimensions, the
C++ compiler the compiled copy needs anyway, the kernel agreeing with torch's attention on a
check at start, and then the compiled copy agreeing with the float32 model on the probes.
Anything else leaves torch's attention in place (``HIVEMIND_EMBEDDING_AMX_ATTENTION=false``
does so by choice). The library is built once (~1 s) into ``~/.cache/hivemind/kernels``.
"""

from __future__ import annotations

import copy
import ctypes
import hashlib
import logging
import os
import platform
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("attention_amx.c")
NAME = "hivemind_amx"  # the attention implementation's name in transformers' registry
LENGTHS = "hivemind_lengths"  # the keyword the compiled copy passes each text's length in
NEEDED_FLAGS = frozenset(
    {"amx_tile", "amx_bf16", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_bf16", "fma"}
)
CFLAGS = [
    "-O3", "-fPIC", "-shared", "-mfma", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq",
    "-mavx512bf16", "-mamx-tile", "-mamx-bf16",
]  # fmt: skip
BUILD_TIMEOUT_S = 120

_lock = threading.Lock()
_lib: Any = None
_failure: str | None = None  # why the kernel cannot be used here, once known
_registered = False


def cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hivemind" / "kernels"


def _build(compiler: str) -> Path:
    """The kernel's shared library, built once per source and compiler (atomically: two
    services starting together each build, and one rename wins)."""
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source + compiler.encode() + " ".join(CFLAGS).encode()).hexdigest()
    target = cache_dir() / f"attention-amx-{digest[:16]}.so"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        done = subprocess.run(
            [compiler, *CFLAGS, "-o", tmp, str(SOURCE)],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{compiler} failed: {done.stderr.strip()[-800:]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def unavailable(compiler: str) -> str | None:
    """Why the kernel cannot run here (None: it is built, loaded and granted the tiles)."""
    global _lib, _failure
    with _lock:
        if _lib is not None:
            return None
        if _failure is not None:
            return _failure
        if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
            _failure = f"not Linux on x86-64 ({platform.system()} {platform.machine()})"
            return _failure
        missing = NEEDED_FLAGS - cpu_flags()
        if missing:
            _failure = f"the CPU lacks {', '.join(sorted(missing))}"
            return _failure
        try:
            lib = ctypes.CDLL(str(_build(compiler)))
            if lib.hm_amx_init() != 0:
                raise RuntimeError("the kernel refused the AMX tile registers (arch_prctl)")
        except Exception as exc:  # no compiler, an old one without AMX, a sandbox ...
            _failure = f"{type(exc).__name__}: {exc}"
            return _failure
        pointer, size = ctypes.c_void_p, ctypes.c_int64
        lib.hm_attention.argtypes = [pointer] * 4 + [size] * 4 + [pointer] * 5 + [ctypes.c_float]
        lib.hm_attention.restype = ctypes.c_int
        _lib = lib
        return None


def _strides(t: Any) -> Any:
    return (ctypes.c_int64 * 3)(t.stride(0), t.stride(1), t.stride(2))


def attention(q: Any, k: Any, v: Any, lengths: Any, scale: float) -> Any:
    """softmax(scale * Q K^T) V over each text's first ``lengths[b]`` positions, for
    ``[texts, heads, positions, dims]`` bfloat16 views; ``[texts, positions, heads, dims]``
    out (what transformers' attention functions return), zeros past a text's length."""
    import torch

    texts, heads, positions, dims = q.shape
    if not (q.dtype == k.dtype == v.dtype == torch.bfloat16) or dims % 32 or dims > 128:
        raise ValueError(
            f"the AMX kernel takes bfloat16 heads of 32-128 dims, not {q.dtype} {dims}"
        )
    if k.shape != q.shape or v.shape != q.shape or lengths.shape != (texts,):
        raise ValueError("the AMX kernel takes self-attention of one shape")
    q, k, v = (x if x.stride(-1) == 1 else x.contiguous() for x in (q, k, v))
    counts = lengths.to(torch.int64).clamp(1, positions).contiguous()
    out = torch.empty(texts, positions, heads, dims, dtype=torch.bfloat16)
    rc = _lib.hm_attention(
        q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(),
        texts, heads, positions, dims,
        _strides(q), _strides(k), _strides(v), _strides(out.transpose(1, 2)),
        counts.data_ptr(), float(scale),
    )  # fmt: skip
    if rc != 0:
        raise RuntimeError(f"the AMX attention kernel failed ({rc})")
    return out


def _attention_function(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    """transformers' attention-function signature, for the compiled copy's transformer only:
    it passes each text's length (``hivemind_lengths``); a call without them (the mask a
    transformer makes for an unknown implementation is None) is refused, never computed."""
    import torch

    lengths = kwargs.get(LENGTHS)
    if lengths is None or scaling is None or dropout:
        raise RuntimeError("the AMX attention runs only inside the compiled copy's pass")
    return torch.ops.hivemind.amx_attention(query, key, value, lengths, float(scaling)), None


def _register() -> None:
    """The custom op (opaque to TorchInductor, which calls it between its own kernels) and the
    attention function in transformers' registry, once a process."""
    global _registered
    with _lock:  # two encoders compiling at once register once
        if not _registered:
            _register_once()
            _registered = True


def _register_once() -> None:
    import torch
    from transformers import AttentionInterface

    # the schema spelled out: this module's annotations are strings (__future__), which
    # torch.library cannot read
    @torch.library.custom_op(  # type: ignore[misc]
        "hivemind::amx_attention",
        mutates_args=(),
        schema="(Tensor q, Tensor k, Tensor v, Tensor lengths, float scale) -> Tensor",
    )
    def amx_attention(q: Any, k: Any, v: Any, lengths: Any, scale: float) -> Any:
        return attention(q, k, v, lengths, scale)

    @amx_attention.register_fake  # type: ignore[misc]
    def _(q: Any, k: Any, v: Any, lengths: Any, scale: float) -> Any:
        texts, heads, positions, dims = q.shape
        return q.new_empty(texts, positions, heads, dims)

    AttentionInterface.register(NAME, _attention_function)


def self_check(dims: int) -> None:
    """The kernel against torch's attention on padded random heads (AssertionError if not)."""
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(7)
    for positions, lengths in ((40, [40, 17, 1]), (150, [150, 131, 64]), (16, [16, 3, 9])):
        x = torch.randn(3, positions, 3, 4, dims, generator=gen).to(torch.bfloat16)
        q, k, v = (x[:, :, i].transpose(1, 2) for i in range(3))  # strided, as a layer makes
        counts = torch.tensor(lengths)
        valid = torch.arange(positions)[None, :] < counts[:, None]
        want = F.scaled_dot_product_attention(
            q.float(), k.float(), v.float(), attn_mask=valid[:, None, None, :]
        ).transpose(1, 2)
        got = attention(q, k, v, counts, dims**-0.5).float()
        inside = valid[:, :, None, None]
        error = float(((got - want).abs() * inside).max())
        assert error < 0.05, f"the AMX attention is off by {error:.4f} at {positions} positions"
        assert float((got * ~inside).abs().max()) == 0.0, "padding rows are not zero"


def prepared(transformer: Any, compiler: str) -> tuple[Any, str | None]:
    """(a copy of ``transformer`` whose attention is the kernel, None), or (None, why not).
    A copy (sharing the weights): the traced copy and the eager model keep torch's attention
    on the original."""
    config = getattr(transformer, "config", None)
    heads = getattr(config, "num_attention_heads", 0) or 0
    hidden = getattr(config, "hidden_size", 0) or 0
    if not heads or hidden % heads or (hidden // heads) % 32 or hidden // heads > 128:
        return None, f"heads of {hidden}/{heads} dims (the kernel takes 32, 64, 96 or 128)"
    if getattr(config, "is_decoder", False) or not hasattr(config, "_attn_implementation"):
        return None, "not a bidirectional encoder"
    why = unavailable(compiler)
    if why is not None:
        return None, why
    try:
        _register()
        self_check(hidden // heads)
    except Exception as exc:
        return None, f"the kernel failed its check: {type(exc).__name__}: {exc}"
    try:
        # new modules and config, the same weight tensors (a full copy held another ~130 MB)
        shared = {id(t): t for t in (*transformer.parameters(), *transformer.buffers())}
        fused = copy.deepcopy(transformer, shared)
        fused.config._attn_implementation = NAME
    except Exception as exc:  # a model that cannot be copied (or no memory for a copy)
        return None, f"no copy of the transformer: {type(exc).__name__}: {exc}"
    return fused, None
