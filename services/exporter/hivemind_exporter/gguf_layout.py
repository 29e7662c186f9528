"""How Hugging Face decoder weights map onto llama.cpp's GGUF layout (``llama`` and ``qwen2``).

Two facts matter beyond the names: llama.cpp's ``llama`` graph expects the rows of Q and K in
its own rotary order (a per-head permutation of HF's halves layout), and ``qwen2`` carries q/k/v
biases that are kept in float32. LoRA ``B`` matrices are rows of the same projection, so they
take the same permutation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from hivemind_common.errors import Unprocessable

SUPPORTED_ARCHS = {"llama": "llama", "qwen2": "qwen2"}  # HF model_type -> GGUF architecture

_GLOBAL = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
_BLOCK = {
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
_BLOCK_RE = re.compile(r"^model\.layers\.(\d+)\.(.+)\.(weight|bias)$")
_LORA_RE = re.compile(
    r"^(?:base_model\.model\.)?model\.layers\.(\d+)\.(.+)\.lora_([AB])(?:\.[^.]+)?\.weight$"
)


@dataclass(frozen=True)
class ArchParams:
    """The hyper-parameters the GGUF header needs, read from a transformers config."""

    hf_type: str
    arch: str
    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ctx: int
    rms_eps: float
    rope_theta: float
    vocab_size: int
    tied: bool

    @classmethod
    def from_config(cls, config: Any) -> ArchParams:
        hf_type = getattr(config, "model_type", "")
        if hf_type not in SUPPORTED_ARCHS:
            raise Unprocessable(f"architecture {hf_type!r} is not exportable (llama, qwen2 are)")
        rope_params = dict(getattr(config, "rope_parameters", None) or {})
        rope_params.update(getattr(config, "rope_scaling", None) or {})
        if rope_params.get("rope_type", rope_params.get("type", "default")) != "default":
            raise Unprocessable("rope scaling is not supported by this exporter")
        n_head = int(config.num_attention_heads)
        n_embd = int(config.hidden_size)
        head_dim = int(getattr(config, "head_dim", None) or n_embd // n_head)
        # transformers 5 keeps rope_theta in rope_parameters; older versions on the config
        rope = getattr(config, "rope_theta", None) or rope_params.get("rope_theta", 10000.0)
        return cls(
            hf_type=hf_type,
            arch=SUPPORTED_ARCHS[hf_type],
            n_layer=int(config.num_hidden_layers),
            n_embd=n_embd,
            n_ff=int(config.intermediate_size),
            n_head=n_head,
            n_head_kv=int(getattr(config, "num_key_value_heads", None) or n_head),
            head_dim=head_dim,
            n_ctx=int(getattr(config, "max_position_embeddings", 2048)),
            rms_eps=float(config.rms_norm_eps),
            rope_theta=float(rope),
            vocab_size=int(config.vocab_size),
            tied=bool(getattr(config, "tie_word_embeddings", False)),
        )


def rotary_permute(rows: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder the rows of a Q/K projection (or a LoRA B) from HF's order to llama.cpp's.

    Within each head HF stores the two rotary halves one after the other; llama.cpp wants them
    interleaved. Shape ``(n_head * head_dim, ...)`` in and out.
    """
    out_dim = rows.shape[0]
    if out_dim % (2 * n_head):
        raise Unprocessable(f"cannot permute {out_dim} rows over {n_head} heads")
    half = out_dim // n_head // 2
    return rows.reshape(n_head, 2, half, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def gguf_tensor_name(hf_name: str) -> str | None:
    """The GGUF name of a HF parameter, or None for parameters llama.cpp does not use."""
    if hf_name in _GLOBAL:
        return _GLOBAL[hf_name]
    match = _BLOCK_RE.match(hf_name)
    if not match or match.group(2) not in _BLOCK:
        return None
    layer, module, kind = match.groups()
    return f"blk.{layer}.{_BLOCK[module]}.{kind}"


def needs_permute(params: ArchParams, gguf_name: str) -> int | None:
    """Heads to permute over for this tensor (llama Q and K), else None."""
    if params.arch != "llama" or not gguf_name.endswith(".weight"):
        return None
    if ".attn_q." in gguf_name:
        return params.n_head
    if ".attn_k." in gguf_name:
        return params.n_head_kv
    return None


def lora_tensor_name(peft_name: str) -> tuple[str, str] | None:
    """``(gguf base tensor name, "a"|"b")`` of a PEFT LoRA parameter, or None if unknown."""
    match = _LORA_RE.match(peft_name)
    if not match:
        return None
    layer, module, which = match.groups()
    if module not in _BLOCK:
        return None
    return f"blk.{layer}.{_BLOCK[module]}.weight", which.lower()
