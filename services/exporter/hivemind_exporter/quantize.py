"""Quantize a GGUF in-process with llama.cpp (``llama_model_quantize``)."""

from __future__ import annotations

import os
from pathlib import Path

import llama_cpp

from hivemind_common.errors import Invalid, UpstreamError

QUANT_TYPES: dict[str, int] = {
    "Q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0,
    "Q6_K": llama_cpp.LLAMA_FTYPE_MOSTLY_Q6_K,
    "Q5_K_M": llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_K_M,
    "Q5_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_0,
    "Q4_K_M": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M,
    "Q4_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0,
}
DEFAULT_QUANT = "Q5_K_M"
REQUANT_QUANT = "Q8_0"


def check_quant(quant: str) -> str:
    """Normalise a quant name (``q5_k_m`` → ``Q5_K_M``) or raise ``Invalid``."""
    name = quant.upper()
    if name not in QUANT_TYPES:
        raise Invalid(f"unknown quant {quant!r}; one of {', '.join(QUANT_TYPES)}", param="quant")
    return name


def choose_quant(requested: str | None, *, base_quantized: bool) -> str:
    """The requested quant, else Q8_0 for a base that was itself quantized, else Q5_K_M.

    A quantized base already sits on a coarse grid; quantizing a small fine-tune of it again
    to a K-quant erases most of what was learned, Q8_0 keeps it.
    """
    if requested:
        return check_quant(requested)
    return REQUANT_QUANT if base_quantized else DEFAULT_QUANT


def quantize_gguf(src: Path, dst: Path, quant: str, *, threads: int | None = None) -> Path:
    """Write ``dst`` as ``quant`` of the f16 GGUF ``src`` (atomically)."""
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANT_TYPES[check_quant(quant)]
    params.nthread = threads or min(4, os.cpu_count() or 1)
    tmp = dst.with_name(f".{dst.name}.tmp")
    try:
        code = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), params)
        if code != 0:
            raise UpstreamError(f"llama.cpp could not quantize {src.name} to {quant} (code {code})")
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)  # a failed or interrupted quantization leaves no temp file
    return dst
