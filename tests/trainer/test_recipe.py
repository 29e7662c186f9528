"""The LoRA recipe on tiny llama / qwen2 models: it learns, resumes, and the gate judges it."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from trainer_tiny import chats

from hivemind_trainer.gate import decide
from hivemind_trainer.recipe.config import RecipeConfig, detect_hardware
from hivemind_trainer.recipe.lora_recipe import LoraRecipe

pytestmark = pytest.mark.slow


def config(**kw: object) -> RecipeConfig:
    base = {"seq_len": 512, "batch_size": 2, "lr": 3e-3, "warmup_steps": 2, "log_every": 1}
    return RecipeConfig.from_mode("fast", **{**base, **kw})  # type: ignore[arg-type]


def test_a_few_steps_lower_the_loss_on_assistant_tokens(tiny_dir: Path) -> None:
    recipe = LoraRecipe(config(max_steps=12, epochs=20.0), tiny_dir)
    recipe.setup()
    data = chats(12)
    prepared = recipe.prepare(data)
    before = recipe.evaluate(data)
    result = recipe.train(prepared)
    after = recipe.evaluate(data)
    assert result.steps == 12 and result.tokens > 0 and result.trained_tokens > 0
    assert after < before - 0.3, (before, after)
    assert result.losses[-1][1] < result.losses[0][1]


def test_a_fresh_adapter_leaves_the_base_model_unchanged(tiny_llama_dir: Path) -> None:
    """Before training the candidate equals the served base, so the gate's baseline is honest."""
    from transformers import AutoModelForCausalLM

    hw = dataclasses.replace(detect_hardware(), dtype="float32")  # exact comparison
    recipe = LoraRecipe(config(), tiny_llama_dir, hardware=hw)
    recipe.setup()
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    ids = torch.tensor([[1, 5, 9, 20, 33]])
    with torch.no_grad():
        torch.testing.assert_close(recipe.model(input_ids=ids).logits, base(input_ids=ids).logits)


def test_a_killed_run_resumes_from_its_checkpoint(tiny_llama_dir: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    first = LoraRecipe(config(max_steps=6, epochs=20.0, checkpoint_every=3), tiny_llama_dir)
    first.setup()
    first.train(first.prepare(chats(8)), checkpoint_dir=ckpt)
    assert (ckpt / "state.pt").is_file()  # written at step 3 (not at the end)
    again = LoraRecipe(config(max_steps=6, epochs=20.0, checkpoint_every=3), tiny_llama_dir)
    again.setup()
    result = again.train(again.prepare(chats(8)), checkpoint_dir=ckpt)
    assert result.resumed_from == 3 and [s for s, _ in result.losses] == [4, 5, 6]


@pytest.mark.parametrize(
    "change", ["data", "lr", "base"], ids=["other data", "other settings", "other base"]
)
def test_a_checkpoint_of_another_plan_is_not_resumed(
    tiny_llama_dir: Path, tmp_path: Path, change: str
) -> None:
    """Step 3 of one run's plan is not step 3 of a run with other chats, settings or base: a
    resumed job whose data or recipe changed since its checkpoint trains from the start."""
    ckpt = tmp_path / "ckpt"
    first = LoraRecipe(config(max_steps=6, epochs=20.0, checkpoint_every=3), tiny_llama_dir)
    first.setup()
    first.train(first.prepare(chats(8)), checkpoint_dir=ckpt)
    assert (ckpt / "state.pt").is_file()
    lr = 1e-3 if change == "lr" else 3e-3
    base = tiny_llama_dir
    if change == "base":  # weights written since the checkpoint (here: the same bytes, later)
        base = Path(shutil.copytree(tiny_llama_dir, tmp_path / "base"))
        for weights in base.glob("*.safetensors"):
            os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    again = LoraRecipe(config(max_steps=6, epochs=20.0, checkpoint_every=3, lr=lr), base)
    again.setup()
    data = chats(8, offset=40) if change == "data" else chats(8)
    result = again.train(again.prepare(data), checkpoint_dir=ckpt)
    assert result.resumed_from == 0 and [s for s, _ in result.losses] == [1, 2, 3, 4, 5, 6]


def test_the_gate_rejects_a_deliberately_damaged_version(trained_tiny_dir: Path) -> None:
    recipe = LoraRecipe(config(max_steps=8, epochs=20.0, lr=1e-3), trained_tiny_dir)
    recipe.setup()
    train, heldout = chats(12), chats(4, offset=40)
    general = chats(4, offset=80)
    served = {"heldout": recipe.evaluate(heldout), "general": recipe.evaluate(general)}
    recipe.train(recipe.prepare(train))
    good = {"heldout": recipe.evaluate(heldout), "general": recipe.evaluate(general)}
    assert decide(served=served, candidate=good, general_tolerance=0.5).deployable
    with torch.no_grad():  # damage: noise in every LoRA matrix
        for name, p in recipe.model.named_parameters():
            if "lora_" in name:
                p.add_(torch.randn_like(p))
    damaged = {"heldout": recipe.evaluate(heldout), "general": recipe.evaluate(general)}
    verdict = decide(served=served, candidate=damaged)
    assert not verdict.deployable
    assert any("worse than served" in r for r in verdict.reasons)


def test_modes_and_overrides_are_typed_and_checked() -> None:
    cfg = RecipeConfig.from_mode("best").with_overrides({"lr": "1e-4", "targets": "q_proj,v_proj"})
    assert cfg.lr == 1e-4 and cfg.targets == ("q_proj", "v_proj") and cfg.lora_r == 32
    import pytest

    from hivemind_common.errors import Invalid

    with pytest.raises(Invalid):
        cfg.with_overrides({"nonsense": "1"})
    bad_values = [
        {"lr": "nan"},
        {"lr": "0"},
        {"batch_size": "-5"},
        {"lora_dropout": "1.5"},
        {"checkpoint_every": "0"},
        {"targets": "q_proj,;rm"},
        {"dtype": "int4"},
    ]
    for bad in bad_values:
        with pytest.raises(Invalid):
            cfg.with_overrides(bad)
    with pytest.raises(Invalid):
        RecipeConfig.from_mode("turbo")
    hw = detect_hardware()
    assert hw.device in {"cpu", "cuda", "rocm"} and hw.threads >= 1


def test_the_gateways_override_rules_name_every_recipe_setting() -> None:
    """The gateway checks overrides without torch (hivemind_common.recipe_overrides); its table
    must name exactly the recipe's fields, or a valid override would be refused there."""
    from dataclasses import fields

    from hivemind_common.recipe_overrides import RULES

    assert set(RULES) == {f.name for f in fields(RecipeConfig)}


def test_the_general_gate_is_anchored_to_the_base_not_the_served_one() -> None:
    # the served version already drifted 2% from the base; another 1.5% passes against it
    served = {"heldout": 2.0, "general": 1.02}
    candidate = {"heldout": 1.9, "general": 1.035}
    base = {"heldout": 2.5, "general": 1.0}
    verdict = decide(served=served, candidate=candidate, base=base)
    assert not verdict.deployable
    assert any("worse than base 1.0000" in r for r in verdict.reasons)
    # within 2% of the base: deployable; the best version's general loss is reported beside it
    close = {"heldout": 1.9, "general": 1.015}
    assert decide(served=served, candidate=close, base=base).deployable
    reported = decide(served=served, candidate=close, base=base, best_general=0.98)
    assert reported.deployable and reported.best_general == 0.98
    assert any("best version so far 0.9800" in r for r in reported.reasons)


def test_the_control_refuses_an_adapter_that_scores_exactly_as_no_adapter(
    trained_tiny_dir: Path,
) -> None:
    recipe = LoraRecipe(config(max_steps=4, epochs=20.0, lr=0.0), trained_tiny_dir)
    recipe.setup()
    train, heldout, general = chats(12), chats(4, offset=40), chats(4, offset=80)
    served = {"heldout": recipe.evaluate(heldout), "general": recipe.evaluate(general)}
    base = {"heldout": recipe.evaluate_base(heldout), "general": recipe.evaluate_base(general)}
    recipe.train(recipe.prepare(train))  # lr 0: the fresh adapter stays a no-op
    candidate = {"heldout": recipe.evaluate(heldout), "general": recipe.evaluate(general)}
    verdict = decide(served=served, candidate=candidate, base=base)
    assert not verdict.deployable
    assert any(r.startswith("control:") for r in verdict.reasons)
    with torch.no_grad():  # an adapter that does something passes the control
        for name, p in recipe.model.named_parameters():
            if "lora_B" in name:
                p.add_(1e-3 * torch.randn_like(p))
    moved = {"heldout": recipe.evaluate(heldout), "general": recipe.evaluate(general)}
    assert not any(
        r.startswith("control:") for r in decide(served=served, candidate=moved, base=base).reasons
    )


def test_the_general_set_spans_code_reasoning_knowledge_and_styles_in_a_few_hundred_chats() -> None:
    from hivemind_trainer.gate import general_eval_items, general_eval_set, general_set_id

    chats_ = general_eval_set()
    assert len(chats_) >= 250
    texts = [json.dumps(c, sort_keys=True) for c in chats_]
    assert len(set(texts)) == len(texts)  # no chat counted twice
    replies = [m["content"] for c in chats_ for m in c if m["role"] == "assistant"]
    assert sum("```python" in r for r in replies) >= 10  # code to write
    assert sum("=" in r and any(ch.isdigit() for ch in r) for r in replies) >= 15  # worked sums
    assert sum(r.startswith("{") for r in replies) >= 5  # JSON answers
    assert sum(len(c) > 3 for c in chats_) >= 5  # follow-up turns
    assert general_set_id(general_eval_items()) == general_set_id(general_eval_items())
