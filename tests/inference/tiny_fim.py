"""A tiny llama GGUF (2 layers, hidden 64, random weights) whose vocabulary has FIM tokens.

The tokenizer is SmolLM2's, copied key by key, with three of its unused control tokens renamed
``<fim_prefix>``, ``<fim_suffix>`` and ``<fim_middle>`` and declared in the
``tokenizer.ggml.fim_*_token_id`` keys, so llama.cpp reports them as the model's FIM tokens.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FIM_TOKENS = {11: "<fim_prefix>", 12: "<fim_suffix>", 13: "<fim_middle>"}  # were <jupyter_*>
FIM_KEYS = {
    "tokenizer.ggml.fim_pre_token_id": 11,
    "tokenizer.ggml.fim_suf_token_id": 12,
    "tokenizer.ggml.fim_mid_token_id": 13,
}
N_EMBD, N_FF, N_LAYER, N_HEAD, N_HEAD_KV = 64, 128, 2, 4, 2


def _tokenizer_fields(source: Path) -> list[tuple[str, object, object, object]]:
    """The source GGUF's tokenizer keys (as the exporter copies them), FIM tokens renamed."""
    from hivemind_exporter.gguf_write import gguf_summary

    fields = []
    for key, value, vtype, sub in gguf_summary(source).tokenizer:
        if key == "tokenizer.ggml.tokens":
            value = list(value)
            for index, text in FIM_TOKENS.items():
                value[index] = text
        fields.append((key, value, vtype, sub))
    return fields


def write_fim_gguf(
    out: Path, *, tokenizer_from: Path, seed: int = 0, chat_template: str | None = None
) -> Path:
    """Write the tiny FIM model to ``out`` (with ``chat_template`` in place of SmolLM2's)."""
    import gguf

    fields = _tokenizer_fields(tokenizer_from)
    if chat_template is not None:
        fields = [f for f in fields if f[0] != "tokenizer.chat_template"]
        fields.append(("tokenizer.chat_template", chat_template, gguf.GGUFValueType.STRING, None))
    n_vocab = next(len(v) for k, v, _, _ in fields if k == "tokenizer.ggml.tokens")  # type: ignore[arg-type]
    rng = np.random.default_rng(seed)

    def matrix(rows: int, cols: int) -> np.ndarray:
        return rng.normal(0.0, 0.05, size=(rows, cols)).astype(np.float16)

    writer = gguf.GGUFWriter(str(out), "llama")
    writer.add_name("tiny-fim")
    writer.add_context_length(512)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD_KV)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(n_vocab)
    writer.add_file_type(1)  # mostly f16
    for key, value, vtype, sub in fields:
        writer.add_key_value(key, value, vtype, sub_type=sub)
    for key, token_id in FIM_KEYS.items():
        writer.add_uint32(key, token_id)
    head_dim = N_EMBD // N_HEAD
    writer.add_tensor("token_embd.weight", matrix(n_vocab, N_EMBD))
    writer.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    for layer in range(N_LAYER):
        tensors = {
            "attn_norm.weight": np.ones(N_EMBD, dtype=np.float32),
            "ffn_norm.weight": np.ones(N_EMBD, dtype=np.float32),
            "attn_q.weight": matrix(N_EMBD, N_EMBD),
            "attn_k.weight": matrix(N_HEAD_KV * head_dim, N_EMBD),
            "attn_v.weight": matrix(N_HEAD_KV * head_dim, N_EMBD),
            "attn_output.weight": matrix(N_EMBD, N_EMBD),
            "ffn_gate.weight": matrix(N_FF, N_EMBD),
            "ffn_up.weight": matrix(N_FF, N_EMBD),
            "ffn_down.weight": matrix(N_EMBD, N_FF),
        }
        for name, array in tensors.items():
            writer.add_tensor(f"blk.{layer}.{name}", array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out
