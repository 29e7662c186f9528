"""The preference stage (issue 18): corrections with a fixed, checkable property (every
preferred answer ends with the same sign-off, the original answers with another phrase) raise
held-out preference accuracy above what the SFT-only adapter reaches on the same data, through
the cycle's own training step; and the gate refuses a candidate whose preference accuracy falls
below the served model's."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from hivemind_trainer.cycle import recipe_config, train_and_gate
from hivemind_trainer.gate import decide
from hivemind_trainer.preference.data import PreferenceData
from hivemind_trainer.settings import TrainerSettings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

SIGN_OFF = "of France."  # the corrections' property: a few tokens the tiny tokenizer knows
OTHER = "the capital."  # how the model's own answers ended


def pair(i: int, split: str) -> dict[str, Any]:
    answer = f"{i} plus {i + 1} is {2 * i + 1}"
    return {
        "id": f"p{i}",
        "label": "pair",
        "split": split,
        "prompt": [{"role": "user", "content": f"What is {i} plus {i + 1}?"}],
        "chosen": f"{answer} {SIGN_OFF}",
        "rejected": f"{answer} {OTHER}",
    }


def test_dpo_on_corrections_beats_the_sft_only_adapter_on_heldout_pairs(
    trained_tiny_dir: Path, tmp_path: Path
) -> None:
    train = [pair(i, "train") for i in range(32)]
    held = [pair(i, "heldout") for i in range(300, 316)]
    data = PreferenceData(pairs=train, heldout_pairs=held)
    # the SFT data is what the collector stores: the chats with their corrections applied
    sft_chats = [p["prompt"] + [{"role": "assistant", "content": p["chosen"]}] for p in train]
    held_chats = [p["prompt"] + [{"role": "assistant", "content": p["chosen"]}] for p in held]
    settings = TrainerSettings(
        data_dir=tmp_path,
        base_hf_dir=trained_tiny_dir,
        seq_len=256,
        max_steps=4,
        threads=2,
        general_tolerance=1.0,
        general_accuracy_tolerance=1.0,
        learning_objective="both",
        preference_min_pairs=8,
        preference_steps=12,
        preference_lr=1e-2,
        preference_batch_size=8,
    )
    trained = train_and_gate(
        cfg=recipe_config(settings, None),
        base_dir=trained_tiny_dir,
        adapter_dir=None,
        train=sft_chats,
        heldout=held_chats,
        out_dir=tmp_path / "both",
        checkpoint_dir=None,
        settings=settings,
        preference=data,
    )
    pref = trained.gate.preference
    # "sft" is the SFT-only adapter (the same run, measured before the preference stage)
    print(
        "held-out preference accuracy: served (base) "
        f"{pref['served']}, sft-only {pref['sft']}, sft+dpo {pref['candidate']}"
    )
    assert pref["sft"] is not None and pref["candidate"] is not None
    assert pref["candidate"] > pref["sft"]
    assert pref["stage"]["stage"] == "dpo"
    assert pref["stage"]["losses"][-1] < pref["stage"]["losses"][0]
    assert trained.train["preference_stage"]["examples"] == len(train)
    assert trained.gate.deployable, trained.gate.reasons
    assert any(r.startswith("preference accuracy") for r in trained.gate.reasons)
    # only the trained adapter is saved: TRL's frozen reference copy is gone
    saved = tmp_path / "both" / "adapter"
    assert (saved / "adapter_model.safetensors").is_file() and not (saved / "ref").exists()


def test_the_gate_refuses_a_candidate_with_lower_preference_accuracy() -> None:
    losses = {"heldout": 1.0, "general": 2.0}
    base = {"heldout": 1.5, "general": 2.0 + 1e-3}
    worse = decide(
        served=losses,
        candidate=losses,
        base=base,
        preference={"served": 0.75, "candidate": 0.5},
    )
    assert not worse.deployable
    assert "preference accuracy 0.5000 worse than served 0.7500" in worse.reasons
    same = decide(
        served=losses, candidate=losses, base=base, preference={"served": 0.5, "candidate": 0.5}
    )
    assert same.deployable and math.isclose(same.preference["candidate"], 0.5)
    unmeasured = decide(served=losses, candidate=losses, base=base, preference={"candidate": 0.1})
    assert unmeasured.deployable  # nothing served to compare with


def test_rated_answers_without_pairs_run_a_kto_stage(
    trained_tiny_dir: Path, tmp_path: Path
) -> None:
    def rated(i: int, good: bool) -> dict[str, Any]:
        p = pair(i, "train")
        return {
            **p,
            "label": "good" if good else "bad",
            "chosen" if good else "rejected": p["chosen"],
        }

    data = PreferenceData(rated=[rated(i, i % 2 == 0) for i in range(16)])
    settings = TrainerSettings(
        data_dir=tmp_path,
        base_hf_dir=trained_tiny_dir,
        seq_len=256,
        max_steps=2,
        threads=2,
        general_tolerance=1.0,
        general_accuracy_tolerance=1.0,
        preference_min_rated=8,
        preference_steps=3,
        preference_batch_size=4,
    )
    chats = [p["prompt"] + [{"role": "assistant", "content": p["chosen"]}] for p in data.rated]
    trained = train_and_gate(
        cfg=recipe_config(settings, None),
        base_dir=trained_tiny_dir,
        adapter_dir=None,
        train=chats,
        heldout=chats[:4],
        out_dir=tmp_path / "kto",
        checkpoint_dir=None,
        settings=settings,
        preference=data,
    )
    stage = trained.train["preference_stage"]
    assert stage["stage"] == "kto" and stage["steps"] == 3 and stage["examples"] == 16
    assert trained.gate.preference["data"] == {"pairs": 0, "good": 8, "bad": 8, "heldout_pairs": 0}
