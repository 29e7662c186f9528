"""Write GGUF files in-process with the ``gguf`` package: a merged model and a LoRA adapter.

The tokenizer is not rebuilt: its ``tokenizer.*`` keys are copied from a GGUF of the same base
(the shipped SmolLM2 file, say), which llama.cpp then reads as it reads the original.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from hivemind_common.errors import Unprocessable
from hivemind_exporter.gguf_layout import (
    ArchParams,
    gguf_tensor_name,
    lora_tensor_name,
    needs_permute,
    rotary_permute,
)

log = logging.getLogger(__name__)

FILE_TYPE_F16 = 1


_UNQUANTIZED = {
    gguf.GGMLQuantizationType.F32,
    gguf.GGMLQuantizationType.F16,
    gguf.GGMLQuantizationType.BF16,
}


@dataclass(frozen=True)
class GGUFSummary:
    """What the exporter needs from a base GGUF: its tokenizer keys and whether it is quantized."""

    tokenizer: tuple[tuple[str, Any, Any, Any], ...]
    quantized: bool


@functools.lru_cache(maxsize=4)
def _summary(path: str, mtime: float) -> GGUFSummary:
    reader = gguf.GGUFReader(path)  # parsing every key takes seconds on a big vocabulary: cached
    fields = []
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        sub = field.types[1] if vtype == gguf.GGUFValueType.ARRAY and len(field.types) > 1 else None
        fields.append((key, field.contents(), vtype, sub))
    quantized = any(t.tensor_type not in _UNQUANTIZED for t in reader.tensors if len(t.shape) > 1)
    return GGUFSummary(tokenizer=tuple(fields), quantized=quantized)


def gguf_summary(path: Path) -> GGUFSummary:
    """Tokenizer keys and quantized-ness of a GGUF, cached per (path, mtime)."""
    return _summary(str(path), os.path.getmtime(path))


def tokenizer_fields(path: Path) -> tuple[tuple[str, Any, Any, Any], ...]:
    """The ``tokenizer.*`` keys of a GGUF (key, value, type, array item type), cached."""
    return gguf_summary(path).tokenizer


def is_quantized_gguf(path: Path) -> bool:
    """True when any matrix of the GGUF is stored quantized (e.g. SmolLM2's Q4_1); from the
    same cached parse as its tokenizer keys (a second parse of SmolLM2's header took ~3 s)."""
    return gguf_summary(path).quantized


def tokenizer_vocab_size(path: Path) -> int:
    for key, value, _, _ in tokenizer_fields(path):
        if key == "tokenizer.ggml.tokens":
            return len(value)
    raise Unprocessable(f"{path} has no tokenizer.ggml.tokens")


def _to_numpy(tensor: Any) -> np.ndarray:
    if isinstance(tensor, np.ndarray):
        return tensor
    return tensor.detach().to("cpu").float().numpy()


def _header(writer: gguf.GGUFWriter, params: ArchParams, name: str) -> None:
    writer.add_name(name)
    writer.add_context_length(params.n_ctx)
    writer.add_embedding_length(params.n_embd)
    writer.add_block_count(params.n_layer)
    writer.add_feed_forward_length(params.n_ff)
    writer.add_head_count(params.n_head)
    writer.add_head_count_kv(params.n_head_kv)
    writer.add_rope_dimension_count(params.head_dim)
    writer.add_rope_freq_base(params.rope_theta)
    writer.add_layer_norm_rms_eps(params.rms_eps)
    writer.add_vocab_size(params.vocab_size)
    writer.add_file_type(FILE_TYPE_F16)


def _finish(writer: gguf.GGUFWriter, out: Path) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    log.info("wrote gguf", extra={"path": str(out), "bytes": out.stat().st_size})


def model_tensors(state: Mapping[str, Any], params: ArchParams) -> Iterable[tuple[str, np.ndarray]]:
    """GGUF (name, array) pairs of a HF state dict: f16 matrices, f32 norms and biases."""
    seen: set[str] = set()
    for hf_name, tensor in state.items():
        name = gguf_tensor_name(hf_name)
        if name is None or (name == "output.weight" and params.tied):
            continue
        array = _to_numpy(tensor)
        heads = needs_permute(params, name)
        if heads is not None:
            array = rotary_permute(array, heads)
        dtype = np.float16 if array.ndim == 2 else np.float32
        seen.add(name)
        yield name, np.ascontiguousarray(array, dtype=dtype)
    if "token_embd.weight" not in seen:
        raise Unprocessable("the state dict has no embedding (model.embed_tokens.weight)")


def write_model_gguf(
    state: Mapping[str, Any],
    params: ArchParams,
    out: Path,
    *,
    tokenizer_gguf: Path,
    name: str = "hivemind",
) -> Path:
    """Write a merged model as an f16 GGUF (norms and biases f32) with a copied tokenizer."""
    if tokenizer_vocab_size(tokenizer_gguf) != params.vocab_size:
        raise Unprocessable(
            f"vocabulary mismatch: model {params.vocab_size}, tokenizer "
            f"{tokenizer_vocab_size(tokenizer_gguf)} ({tokenizer_gguf.name})"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        writer = gguf.GGUFWriter(str(tmp), params.arch)
        _header(writer, params, name)
        for key, value, vtype, sub in tokenizer_fields(tokenizer_gguf):
            writer.add_key_value(key, value, vtype, sub_type=sub)
        for tensor_name, array in model_tensors(state, params):
            writer.add_tensor(tensor_name, array)
        _finish(writer, tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)  # a failed write (disk full, bad tensor) leaves no temp file
    return out


def adapter_tensors(
    lora_state: Mapping[str, Any], params: ArchParams
) -> Iterable[tuple[str, np.ndarray]]:
    """GGUF (name, array) pairs of a PEFT LoRA state dict: A as is, B permuted where Q/K."""
    for peft_name, tensor in lora_state.items():
        mapped = lora_tensor_name(peft_name)
        if mapped is None:
            raise Unprocessable(f"LoRA parameter {peft_name!r} has no llama.cpp counterpart")
        base_name, which = mapped
        array = _to_numpy(tensor)
        if which == "b":
            heads = needs_permute(params, base_name)
            if heads is not None:
                array = rotary_permute(array, heads)
        yield f"{base_name}.lora_{which}", np.ascontiguousarray(array, dtype=np.float32)


def write_adapter_gguf(
    lora_state: Mapping[str, Any],
    params: ArchParams,
    out: Path,
    *,
    alpha: float,
    name: str = "hivemind-lora",
) -> Path:
    """Write a llama.cpp LoRA adapter GGUF (``general.type = adapter``) from PEFT's A and B."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        writer = gguf.GGUFWriter(str(tmp), params.arch)
        writer.add_name(name)
        writer.add_string("general.type", "adapter")
        writer.add_string("adapter.type", "lora")
        writer.add_float32("adapter.lora.alpha", float(alpha))
        count = 0
        for tensor_name, array in adapter_tensors(lora_state, params):
            writer.add_tensor(tensor_name, array)
            count += 1
        if count == 0:
            raise Unprocessable("the adapter has no LoRA tensors")
        _finish(writer, tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)  # a failed write leaves no temp file
    return out
