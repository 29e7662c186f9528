"""Full fine-tuning and Muon on tiny models: the grouping, a falling loss, and a GGUF export
of the fully fine-tuned model whose llama.cpp logits match PyTorch's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from trainer_tiny import chats

from hivemind_common.errors import Invalid
from hivemind_trainer.recipe.config import RecipeConfig, detect_hardware
from hivemind_trainer.recipe.lora_recipe import LoraRecipe
from hivemind_trainer.recipe.optim import OptimizerSet, build_optimizer, muon_groups


def _cpu() -> Any:
    return detect_hardware(threads=torch.get_num_threads(), dtype="float32")


def _tiny_llama(vocab: int = 400) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(cfg)


def test_muon_takes_the_hidden_matrices_and_adamw_the_rest() -> None:
    model = _tiny_llama()
    muon, adamw = muon_groups(model.named_parameters())
    names = {id(p): n for n, p in model.named_parameters()}
    muon_names = sorted(names[id(p)] for p in muon)
    assert len(muon_names) == 2 * 7  # q, k, v, o, gate, up, down of both layers
    assert all(".layers." in n and n.endswith("proj.weight") for n in muon_names)
    adamw_names = {names[id(p)] for p in adamw}
    assert {"model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"} <= adamw_names
    assert all(
        p.ndim == 1 or "embed" in n or "lm_head" in n for p, n in ((p, names[id(p)]) for p in adamw)
    )
    opt = build_optimizer(model, "muon", lr=1e-3, weight_decay=0.0, device="cpu")
    assert isinstance(opt, OptimizerSet)
    assert [type(o).__name__ for o in opt.optimizers] == ["Muon", "AdamW"]
    assert {n for o in opt.optimizers for g in o.param_groups for n in [len(g["params"])]}
    with pytest.raises(Invalid, match="CUDA"):
        build_optimizer(model, "adamw8bit", lr=1e-3, weight_decay=0.0, device="cpu")


def test_muon_groups_every_lora_matrix(tiny_llama_dir: Path) -> None:
    cfg = RecipeConfig.from_mode("fast", seq_len=128, batch_size=2, optimizer="muon")
    recipe = LoraRecipe(cfg, tiny_llama_dir, hardware=_cpu())
    recipe.setup()
    muon, adamw = muon_groups(recipe.model.named_parameters())
    assert len(muon) == 2 * 4 * 2 and not adamw  # A and B of q, k, v, o in both layers


@pytest.mark.parametrize("method", ["lora", "full"])
def test_muon_lowers_the_loss_on_a_tiny_model(tiny_llama_dir: Path, method: str) -> None:
    cfg = RecipeConfig.from_mode(
        "fast",
        seq_len=128,
        batch_size=2,
        epochs=4.0,
        lr=2e-2 if method == "lora" else 5e-4,
        optimizer="muon",
        method=method,
        checkpointing=method == "full",
        log_every=1,
    )
    recipe = LoraRecipe(cfg, tiny_llama_dir, hardware=None)
    recipe.setup()
    assert recipe.hardware is not None and recipe.hardware.checkpointing == (method == "full")
    data = chats(12)
    before = recipe.evaluate(data)
    result = recipe.train(recipe.prepare(data))
    after = recipe.evaluate(data)
    assert after < before - 0.05, (before, after, result.losses)
    assert result.losses[-1][1] < result.losses[0][1]


def test_full_mode_trains_and_exports_a_gguf_that_matches_pytorch(
    tmp_path: Path, smollm2_tokenizer: Any
) -> None:
    """A tiny llama with SmolLM2's vocabulary (so the shipped GGUF's tokenizer fits it), every
    weight trained with gradient checkpointing, saved as a HF directory, written as an f16 GGUF
    by the exporter and quantized; llama.cpp's next-token choices agree with PyTorch's."""
    from transformers import AutoModelForCausalLM

    from hivemind_common.models_paths import default_llm_gguf
    from hivemind_exporter.gguf_layout import ArchParams
    from hivemind_exporter.gguf_write import write_model_gguf
    from hivemind_exporter.quantize import quantize_gguf
    from hivemind_exporter.validate import top1_agreement

    base_dir = tmp_path / "base"
    tiny = _tiny_llama(vocab=49152)
    tiny.config.tie_word_embeddings = True
    tiny.tie_weights()
    tiny.save_pretrained(str(base_dir))
    smollm2_tokenizer.save_pretrained(str(base_dir))
    initial = {k: v.clone() for k, v in tiny.state_dict().items()}

    cfg = RecipeConfig.from_mode(
        "fast",
        seq_len=128,
        batch_size=2,
        epochs=8.0,
        max_steps=4,
        lr=1e-3,
        method="full",
        log_every=1,
    )
    recipe = LoraRecipe(cfg, base_dir, hardware=None)
    recipe.setup()
    assert recipe.hardware is not None and recipe.hardware.checkpointing  # on for full runs
    assert recipe.model.is_activation_checkpointing  # and set on the model itself
    result = recipe.train(recipe.prepare(chats(8)))
    assert result.steps == 4
    out = tmp_path / "full"
    recipe.save(out)
    assert (out / "config.json").is_file() and not (out / "adapter_config.json").exists()

    trained = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
    changed = [k for k, v in trained.state_dict().items() if not torch.equal(v, initial[k])]
    assert any("mlp" in k for k in changed) and any("embed" in k for k in changed)
    f16 = write_model_gguf(
        trained.state_dict(),
        ArchParams.from_config(trained.config),
        tmp_path / "full-f16.gguf",
        tokenizer_gguf=default_llm_gguf(),
    )
    exact = top1_agreement(trained, f16)
    assert exact.agreement >= 0.95 and exact.max_abs_logit_diff < 0.1
    q8 = quantize_gguf(f16, tmp_path / "full-q8_0.gguf", "Q8_0")
    assert top1_agreement(trained, q8).agreement >= 0.9
