"""The training-memory estimator: shapes from HF configs and GGUF metadata, the parts it adds up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hivemind_common import train_estimate as te

SMOLLM2 = {
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_attention_heads": 9,
    "num_hidden_layers": 30,
    "num_key_value_heads": 3,
    "head_dim": 64,
    "tie_word_embeddings": True,
    "vocab_size": 49152,
}
MIB = 1 << 20


def test_the_shape_of_smollm2_counts_its_parameters() -> None:
    shape = te.ModelShape.from_hf_config(SMOLLM2)
    assert shape.params == 134_515_008  # 538 MB of float32 safetensors
    # LoRA r=8 on q,k,v,o: 30 layers x 8 x ((576+576) + (576+192) x 2 + (576+576))
    assert shape.lora_params(8, ("q_proj", "k_proj", "v_proj", "o_proj")) == 30 * 8 * 3840


def test_a_gguf_header_gives_the_same_shape() -> None:
    meta = {
        "general.architecture": "llama",
        "llama.embedding_length": 576,
        "llama.block_count": 30,
        "llama.feed_forward_length": 1536,
        "llama.attention.head_count": 9,
        "llama.attention.head_count_kv": 3,
        "tokenizer.ggml.tokens": ["t"] * 49152,
    }
    assert te.ModelShape.from_gguf_metadata(meta) == te.ModelShape.from_hf_config(SMOLLM2)


def test_the_shipped_gguf_and_a_config_file_are_read(tmp_path: Path) -> None:
    from hivemind_trainer.recipe.model_io import default_gguf

    (tmp_path / "config.json").write_text(json.dumps(SMOLLM2))
    from_dir = te.shape_from_path(tmp_path)
    assert te.shape_from_path(default_gguf()) == from_dir


def test_bad_configs_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="num_attention_heads"):
        te.ModelShape.from_hf_config({"hidden_size": 8})
    with pytest.raises(ValueError, match="positive"):
        te.ModelShape.from_hf_config({**SMOLLM2, "hidden_size": 0})
    (tmp_path / "config.json").write_text("[")
    with pytest.raises(ValueError, match="not JSON"):
        te.shape_from_path(tmp_path)
    shape = te.ModelShape.from_hf_config(SMOLLM2)
    for bad in ({"mode": "half"}, {"optimizer": "sgd"}, {"dtype": "int8"}, {"batch": 0}):
        with pytest.raises(ValueError):
            te.estimate_memory(shape, **{"seq_len": 512, "batch": 1, **bad})  # type: ignore[arg-type]


def test_the_parts_follow_the_mode_optimizer_and_checkpointing() -> None:
    shape = te.ModelShape.from_hf_config({**SMOLLM2, "tie_word_embeddings": False})
    lora = te.estimate_memory(shape, mode="lora", seq_len=512, batch=4)
    full = te.estimate_memory(shape, mode="full", seq_len=512, batch=4)
    assert lora.weights > shape.params * 4 > lora.weights - lora.trainable_params * 4 - 1
    assert full.gradients == shape.params * 4 and full.optimizer == shape.params * 8
    eight = te.estimate_memory(shape, mode="full", seq_len=512, batch=4, optimizer="adamw8bit")
    muon = te.estimate_memory(shape, mode="full", seq_len=512, batch=4, optimizer="muon")
    assert eight.optimizer == shape.params * 2
    # Muon keeps one moment for the hidden matrices, AdamW two for embeddings, head and norms
    assert muon.optimizer == shape.matrix_params * 4 + (shape.params - shape.matrix_params) * 8
    gpu = dict(mode="lora", seq_len=512, batch=4, dtype="bfloat16", device="cuda")
    bf16 = te.estimate_memory(shape, **gpu)  # type: ignore[arg-type]
    qlora = te.estimate_memory(shape, **{**gpu, "mode": "qlora"})  # type: ignore[arg-type]
    assert qlora.weights < bf16.weights < lora.weights
    # on a CPU the recipe keeps the frozen base in float32 and autocasts its matmuls: the
    # weights are float32 and autograd keeps each matrix's bf16 copy for the backward
    cpu = te.estimate_memory(shape, mode="lora", seq_len=512, batch=4, dtype="bfloat16")
    assert cpu.weights == lora.weights
    stored16 = te.estimate_memory(
        shape, mode="lora", seq_len=512, batch=4, dtype="bfloat16", weight_dtype="bfloat16"
    )
    assert stored16.weights == bf16.weights
    assert cpu.activations - stored16.activations == shape.matrix_params * 2
    ckpt = te.estimate_memory(shape, mode="full", seq_len=512, batch=4, checkpointing=True)
    assert ckpt.activations < full.activations / 2
    double = te.estimate_memory(shape, mode="lora", seq_len=512, batch=8)
    assert double.activations == pytest.approx(2 * lora.activations, rel=1e-6)
    assert lora.as_dict()["total"] == lora.total
    assert set(lora.as_dict()) >= {"weights", "gradients", "optimizer", "activations", "overhead"}


def test_a_7b_full_run_needs_far_more_than_its_lora() -> None:
    llama7b = {
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_attention_heads": 32,
        "num_hidden_layers": 32,
        "vocab_size": 32000,
    }
    shape = te.ModelShape.from_hf_config(llama7b)
    assert 6.6e9 < shape.params < 6.8e9
    full = te.estimate_memory(shape, mode="full", seq_len=2048, batch=1, dtype="bfloat16")
    qlora = te.estimate_memory(
        shape, mode="qlora", seq_len=2048, batch=1, dtype="bfloat16", checkpointing=True
    )
    assert full.total > 100 * 2**30 and qlora.total < 12 * 2**30
    budget = 24 * 2**30
    assert te.largest_batch(shape, budget_bytes=budget, mode="full", seq_len=2048) == 0
    kw = dict(mode="qlora", seq_len=2048, dtype="bfloat16", checkpointing=True)
    batch = te.largest_batch(shape, budget_bytes=budget, **kw)  # type: ignore[arg-type]
    assert batch >= 1
    assert te.estimate_memory(shape, batch=batch, **kw).total <= budget  # type: ignore[arg-type]
    message = te.fits_message(full, available_bytes=budget)
    assert "weights" in message and "activations" in message and "MiB" in message


def test_importing_it_loads_no_torch() -> None:
    code = "import sys, hivemind_common.train_estimate; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
