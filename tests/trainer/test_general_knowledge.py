"""Forgetting is judged on what the base knew, not on how replies are worded (issue 18).

Every chat of the general set has an answer (a city, a number, the code); the gate reads the
answer's tokens only, teacher forced: their accuracy must stay within 2 points of the base's,
and their loss is bounded against gross damage. A small set still gets enough optimizer steps
to learn from (``min_steps``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from trainer_tiny import chats

from hivemind_common.errors import Invalid, Unprocessable
from hivemind_trainer.data.general_set import general_items
from hivemind_trainer.gate import decide, general_eval_items, general_eval_set, general_set_id
from hivemind_trainer.recipe.chat_format import IGNORE, answer_only, encode_chat
from hivemind_trainer.recipe.config import RecipeConfig
from hivemind_trainer.recipe.lora_recipe import LoraRecipe, Prepared
from hivemind_trainer.recipe.validators import ValidationReport


def test_every_general_answer_is_in_its_last_reply() -> None:
    items = general_items()
    assert len(items) == len(general_eval_set()) >= 250
    assert [i.chat for i in items] == general_eval_set()
    for item in items:
        last = [m["content"] for m in item.chat if m["role"] == "assistant"][-1]
        assert item.answer and item.answer in last, item


def test_the_set_id_changes_with_the_answers() -> None:
    items = general_eval_items()
    moved = [items[0]._replace(answer=items[0].answer[:-1]), *items[1:]]
    assert general_set_id(items) == general_set_id(general_eval_items())
    assert general_set_id(moved) != general_set_id(items)


def test_answer_only_labels_exactly_the_answer_tokens(smollm2_tokenizer: Any) -> None:
    tok = smollm2_tokenizer
    chat = [
        {"role": "user", "content": "What is the capital of Norway?"},
        {"role": "assistant", "content": "Ahoy, matey! The capital of Norway is Oslo. Fair winds!"},
    ]
    full = encode_chat(tok, chat)
    only = answer_only(tok, full, "Oslo")
    labelled = [t for t in only.labels if t != IGNORE]
    assert labelled and tok.decode(labelled).strip() == "Oslo"
    # a subset of the reply's labels: nothing of the prompt, the greeting or the sign-off
    assert all(a in (IGNORE, b) for a, b in zip(only.labels, full.labels, strict=True))
    assert only.input_ids == full.input_ids
    with pytest.raises(Unprocessable):
        answer_only(tok, full, "Bergen")


def test_the_last_occurrence_in_the_last_reply_is_labelled(smollm2_tokenizer: Any) -> None:
    tok = smollm2_tokenizer
    chat = [
        {"role": "user", "content": "Tell me about iron."},
        {"role": "assistant", "content": "Iron is element 26."},
        {"role": "user", "content": "And 26 again?"},
        {"role": "assistant", "content": "Yes, 26."},
    ]
    enc = encode_chat(tok, chat)
    only = answer_only(tok, enc, "26")
    picked = [j for j, t in enumerate(only.labels) if t != IGNORE]
    offsets = tok(enc.text, add_special_tokens=False, return_offsets_mapping=True)
    starts = [offsets["offset_mapping"][j][0] for j in picked]
    assert picked and min(starts) > enc.text.index("Yes")  # in the last reply, not the first
    assert tok.decode([only.input_ids[j] for j in picked]).strip() == "26"


def _gate(**candidate: float) -> Any:
    base = {"heldout": 2.0, "general": 1.0, "general_accuracy": 0.70}
    cand = {"heldout": 1.0, "general": 1.0, "general_accuracy": 0.70, **candidate}
    return decide(
        served=base, candidate=cand, base=base, general_tolerance=0.15,
        general_accuracy_tolerance=0.02,
    )  # fmt: skip


def test_a_style_that_moves_the_answers_loss_but_not_their_accuracy_passes() -> None:
    verdict = _gate(general=1.06, general_accuracy=0.705)
    assert verdict.deployable, verdict.reasons
    assert any("accuracy 0.7050 vs base 0.7000: ok" in r for r in verdict.reasons)


def test_answers_the_model_no_longer_ranks_first_are_forgetting() -> None:
    verdict = _gate(general=1.01, general_accuracy=0.67)
    assert not verdict.deployable
    assert any("below base 0.7000" in r for r in verdict.reasons)
    assert not _gate(general_accuracy=math.nan).deployable


def test_gross_damage_to_the_answers_loss_is_refused_even_at_equal_accuracy() -> None:
    verdict = _gate(general=1.2, general_accuracy=0.70)
    assert not verdict.deployable
    assert any(r.startswith("general loss 1.2000 worse than base") for r in verdict.reasons)


def test_each_kind_of_knowledge_has_its_own_floor() -> None:
    base = {"heldout": 2.0, "general": 1.0, "general_accuracy": 0.70}
    base |= {"general_accuracy:knowledge": 0.65, "general_accuracy:code": 0.74}
    # a tenth of the facts forgotten: the whole set's accuracy barely moves, the kind's does
    cand = {**base, "heldout": 1.0, "general_accuracy": 0.69}
    cand |= {"general_accuracy:knowledge": 0.57, "general_accuracy:code": 0.75}
    verdict = decide(served=base, candidate=cand, base=base, general_tolerance=0.1)
    assert not verdict.deployable
    assert any("accuracy on knowledge 0.5700 below base 0.6500" in r for r in verdict.reasons)
    cand["general_accuracy:knowledge"] = 0.62  # within the kind's 5 points
    assert decide(served=base, candidate=cand, base=base, general_tolerance=0.1).deployable
    del cand["general_accuracy:knowledge"]  # a kind the candidate lacks fails
    assert not decide(served=base, candidate=cand, base=base, general_tolerance=0.1).deployable


def test_a_nan_anchor_fails_the_loss_check() -> None:
    served = {"heldout": 2.0, "general": math.nan}
    verdict = decide(served=served, candidate={"heldout": 1.0, "general": 1.0})
    assert not verdict.deployable


def test_every_general_item_has_a_kind() -> None:
    kinds = {item.kind for item in general_items()}
    assert kinds == {"hand-written", "knowledge", "reasoning", "code", "styles"}


def test_without_accuracies_the_loss_rule_alone_decides() -> None:
    served = {"heldout": 2.0, "general": 1.0}
    assert not decide(served=served, candidate={"heldout": 1.0, "general": 1.05}).deployable
    assert decide(served=served, candidate={"heldout": 1.0, "general": 1.01}).deployable


def _prepared(n: int, length: int) -> Prepared:
    from hivemind_trainer.recipe.chat_format import EncodedChat

    enc = [EncodedChat([1] * length, [1] * length, [(0, length)], "x") for _ in range(n)]
    return Prepared(enc, [], ValidationReport(chats=n), dropped=0)


def _plan(n: int, **kw: Any) -> list[list[int]]:
    cfg = RecipeConfig(seq_len=256, batch_size=1, **kw)
    recipe = LoraRecipe(cfg, Path("/nonexistent"))
    recipe.batch_size = 1
    return recipe.plan(_prepared(n, 60))


def test_a_small_set_gets_min_steps_in_more_passes_bounded_by_max_epochs() -> None:
    # 40 chats of 60 tokens: 4 per 256-token row, 10 steps an epoch
    assert len(_plan(40, epochs=1.0)) == 10
    assert len(_plan(40, epochs=1.0, min_steps=32)) == 32
    assert len(_plan(40, epochs=1.0, min_steps=32, max_epochs=2.0)) == 20
    assert len(_plan(40, epochs=1.0, min_steps=32, max_steps=12)) == 12
    assert len(_plan(400, epochs=1.0, min_steps=32)) == 100  # a large set: epochs decide
    # every chat of the set is used in each pass
    steps = _plan(40, epochs=1.0, min_steps=20)
    assert sorted(i for s in steps[:10] for i in s) == list(range(40))


def test_the_presets_give_small_sets_a_floor_of_steps() -> None:
    for mode in ("fast", "balanced", "best"):
        assert RecipeConfig.from_mode(mode).min_steps >= 32
    with pytest.raises(Invalid):
        RecipeConfig.from_mode("fast").with_overrides({"min_steps": "many"})
    assert RecipeConfig.from_mode("fast").with_overrides({"min_steps": "0"}).min_steps == 0


@pytest.mark.slow
def test_answer_scores_measure_the_answers_on_a_tiny_model(tiny_llama_dir: Path) -> None:
    # rows of 128 tokens, one a batch: several batches, so the labels of each set must line up
    recipe = LoraRecipe(RecipeConfig(seq_len=128, batch_size=1), tiny_llama_dir)
    recipe.setup()
    data = chats(9)
    answers = [[m["content"] for m in c if m["role"] == "assistant"][-1][-3:-1] for c in data]
    kinds = ["odd" if i % 2 else "even" for i in range(len(data))]
    scores = recipe.answer_scores(data, answers, kinds)
    assert len(recipe.batches(recipe._prepare_answers(data, answers)[0])) >= 3
    assert set(scores) == {"answers", "replies", "kind:even", "kind:odd"}
    base = recipe.answer_scores_base(data, answers, kinds)
    for name, figures in scores.items():  # a fresh LoRA is a no-op
        assert figures == pytest.approx(base[name])
    loss, accuracy = scores["answers"]
    assert math.isfinite(loss) and 0.0 <= accuracy <= 1.0
    assert scores["replies"][0] == pytest.approx(recipe.evaluate(data))  # same forward passes
    assert loss != pytest.approx(scores["replies"][0])  # the answers are fewer tokens
    # each kind alone, measured apart, gives the same figures as inside the whole set
    for kind in ("even", "odd"):
        mine = [i for i, k in enumerate(kinds) if k == kind]
        alone = recipe.answer_scores([data[i] for i in mine], [answers[i] for i in mine])
        assert scores[f"kind:{kind}"] == pytest.approx(alone["answers"])


@pytest.mark.slow
def test_noise_in_the_adapter_is_caught_by_the_answers_accuracy(trained_tiny_dir: Path) -> None:
    recipe = LoraRecipe(RecipeConfig(seq_len=512, batch_size=2, lr=1e-3), trained_tiny_dir)
    recipe.setup()
    general = chats(8, offset=80)
    answers = [[m["content"] for m in c if m["role"] == "assistant"][-1][:-1] for c in general]
    base_loss, base_acc = recipe.answer_scores_base(general, answers)["answers"]
    assert base_acc > 0.1  # the trained tiny model knows some of these sums
    with torch.no_grad():  # damage: noise in every LoRA matrix
        for name, p in recipe.model.named_parameters():
            if "lora_" in name:
                p.add_(torch.randn_like(p))
    loss, accuracy = recipe.answer_scores(general, answers)["answers"]
    base = {"heldout": 2.0, "general": base_loss, "general_accuracy": base_acc}
    candidate = {"heldout": 1.0, "general": loss, "general_accuracy": accuracy}
    verdict = decide(
        served=base, candidate=candidate, base=base, general_tolerance=10.0,
        general_accuracy_tolerance=0.02,
    )  # fmt: skip
    assert not verdict.deployable  # the loss bound is wide open here: the accuracy refuses it
    assert any("general answers' accuracy" in r and "below base" in r for r in verdict.reasons)
