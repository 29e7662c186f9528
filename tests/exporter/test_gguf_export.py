"""GGUF round trips on tiny models: PyTorch logits against llama.cpp logits."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from exporter.exporter_tiny import TinyModel, make_adapter

from hivemind_common.errors import Invalid
from hivemind_exporter.gguf_layout import ArchParams, rotary_permute
from hivemind_exporter.gguf_write import is_quantized_gguf, write_adapter_gguf
from hivemind_exporter.quantize import choose_quant, quantize_gguf
from hivemind_exporter.validate import top1_agreement


def test_f16_export_matches_pytorch_next_token_predictions(tiny: TinyModel) -> None:
    result = top1_agreement(tiny.model, tiny.base_gguf)
    assert result.positions > 50
    assert result.agreement >= 0.98
    assert result.max_abs_logit_diff < 0.1


def test_f16_export_keeps_architecture_f32_norms_and_qwen2_biases(tiny: TinyModel) -> None:
    reader = gguf.GGUFReader(str(tiny.base_gguf))
    assert reader.fields["general.architecture"].contents() == tiny.arch
    types = {t.name: t.tensor_type for t in reader.tensors}
    assert types["blk.0.attn_q.weight"] == gguf.GGMLQuantizationType.F16
    assert types["blk.0.attn_norm.weight"] == gguf.GGMLQuantizationType.F32
    assert "output.weight" not in types  # tied to the embedding
    if tiny.arch == "qwen2":
        assert types["blk.1.attn_k.bias"] == gguf.GGMLQuantizationType.F32
    assert len(reader.fields["tokenizer.ggml.tokens"].data) == 49152


def test_damaged_export_is_caught_by_the_agreement_check(
    tiny: TinyModel, tmp_path: Path, smollm2_gguf: Path
) -> None:
    from hivemind_exporter.gguf_write import write_model_gguf

    state = {k: v.clone() for k, v in tiny.model.state_dict().items()}
    # Undo the rotary layout (what an exporter without llama's Q/K permutation produces) for
    # llama; scramble V's rows for qwen2. Either must visibly break the predictions.
    for layer in range(2):
        key = f"model.layers.{layer}.self_attn.q_proj.weight"
        if tiny.arch == "llama":
            state[key] = torch.from_numpy(rotary_permute(state[key].numpy(), 4)).clone()
        else:
            state[key] = state[key].flip(0)
    damaged = write_model_gguf(
        state,
        ArchParams.from_config(tiny.model.config),
        tmp_path / "damaged.gguf",
        tokenizer_gguf=smollm2_gguf,
    )
    result = top1_agreement(tiny.model, damaged)
    assert result.agreement < 0.9 and result.tie_aware < 0.9  # ties do not hide real damage


def test_lora_adapter_gguf_on_the_base_matches_the_merged_pytorch_model(
    tiny: TinyModel, tmp_path: Path
) -> None:
    peft_model = make_adapter(tiny, tmp_path / "adapter", rank=4)
    from safetensors.torch import load_file

    lora_state = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    adapter = write_adapter_gguf(
        lora_state, ArchParams.from_config(tiny.model.config), tmp_path / "a.gguf", alpha=16
    )
    reader = gguf.GGUFReader(str(adapter))
    assert reader.fields["general.type"].contents() == "adapter"
    assert reader.fields["adapter.type"].contents() == "lora"
    assert reader.fields["general.architecture"].contents() == tiny.arch
    assert reader.fields["adapter.lora.alpha"].contents() == pytest.approx(16.0)
    shapes = {t.name: tuple(int(x) for x in t.shape) for t in reader.tensors}
    assert shapes["blk.0.attn_k.weight.lora_a"] == (64, 4)  # GGUF lists (in, r) for r x in
    assert shapes["blk.0.attn_k.weight.lora_b"] == (4, 32)  # out x r, 2 KV heads of 16

    merged = peft_model.merge_and_unload().eval()
    with_adapter = top1_agreement(merged, tiny.base_gguf, lora=adapter)
    assert with_adapter.agreement >= 0.98
    # the adapter changes the predictions, so the check above is not trivially true
    assert top1_agreement(merged, tiny.base_gguf).agreement < 0.9


def test_quantized_export_loads_and_a_quantized_base_is_detected(
    tiny: TinyModel, tmp_path: Path, smollm2_gguf: Path
) -> None:
    out = quantize_gguf(tiny.base_gguf, tmp_path / "model-Q8_0.gguf", "q8_0")
    assert out.stat().st_size < tiny.base_gguf.stat().st_size
    assert top1_agreement(tiny.model, out).agreement >= 0.9
    assert is_quantized_gguf(out) and is_quantized_gguf(smollm2_gguf)
    assert not is_quantized_gguf(tiny.base_gguf)


def test_quant_choice_defaults_to_q5_k_m_and_to_q8_0_over_a_quantized_base() -> None:
    assert choose_quant(None, base_quantized=False) == "Q5_K_M"
    assert choose_quant(None, base_quantized=True) == "Q8_0"
    assert choose_quant("q4_k_m", base_quantized=True) == "Q4_K_M"
    with pytest.raises(Invalid):
        choose_quant("Q3_weird", base_quantized=False)


def test_rotary_permutation_interleaves_the_two_halves_of_each_head() -> None:
    rows = np.arange(8).reshape(8, 1)  # 2 heads of 4 rows: halves (0,1)(2,3) and (4,5)(6,7)
    assert rotary_permute(rows, 2).ravel().tolist() == [0, 2, 1, 3, 4, 6, 5, 7]


def test_direct_lora_merge_equals_peft_merge(tiny: TinyModel, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from hivemind_exporter.base_model import load_adapter, merge_lora

    peft_model = make_adapter(tiny, tmp_path / "adapter", rank=4)
    expected = peft_model.merge_and_unload().state_dict()
    config, lora_state = load_adapter(tmp_path / "adapter")
    model = AutoModelForCausalLM.from_pretrained(str(tiny.hf_dir), dtype="float32")
    assert merge_lora(model, config, lora_state) == 2 * 7  # 2 layers x 7 projections
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, expected[name], rtol=1e-5, atol=1e-5)
