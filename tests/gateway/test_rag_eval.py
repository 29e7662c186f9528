"""The retrieval gate on our eval set, with the real MiniLM model, calibration and held-out."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from hivemind_gateway.rag.evaluation import evaluate, load_eval_set

EVAL_SET = Path(__file__).resolve().parents[1] / "data" / "retrieval_eval.json"


@pytest.fixture(scope="module")
def encode() -> Callable[[list[str]], np.ndarray]:
    from hivemind_embedding.encoder import DEFAULT_MODEL_ID, SentenceEncoder, default_model_dir

    encoder = SentenceEncoder.load(default_model_dir(), model_id=DEFAULT_MODEL_ID)
    return encoder.encode


def test_the_eval_set_is_big_enough_and_consistent() -> None:
    data = load_eval_set(EVAL_SET)
    keys = {f["key"] for f in data["facts"]}
    assert len(keys) == len(data["facts"]) >= 30
    assert len(data["queries"]) >= 40 and len(data["unanswerable"]) >= 10
    assert all(set(q["expected"]) <= keys for q in data["queries"])
    assert {q["split"] for q in data["queries"]} == {"calibration", "holdout"}


@pytest.mark.parametrize("split", ["calibration", "holdout"])
def test_the_gate_injects_the_right_fact_and_rarely_anything_for_misses(
    encode: Callable[[list[str]], np.ndarray], split: str
) -> None:
    result = evaluate(load_eval_set(EVAL_SET), encode, split=split)
    assert result["right_fact_injected"] >= 0.95, result["failures"]
    assert result["unanswerable_injected"] <= 0.10, result["failures"]
    assert result["top1_accuracy"] >= 0.9


def test_the_gate_holds_on_a_second_domain_it_was_not_tuned_on(
    encode: Callable[[list[str]], np.ndarray],
) -> None:
    result = evaluate(load_eval_set(EVAL_SET)["second_domain"], encode)
    assert result["right_fact_injected"] >= 0.9, result["failures"]
    assert result["unanswerable_injected"] <= 0.10, result["failures"]


@pytest.mark.parametrize(("domain", "floor"), [("chat_domain", 0.9), ("homelab_domain", 0.75)])
def test_the_gate_holds_on_chat_turns_and_on_a_domain_written_after_it(
    encode: Callable[[list[str]], np.ndarray], domain: str, floor: float
) -> None:
    # homelab_domain was written after the gate was last changed: its figure (0.81) is the
    # honest estimate for unseen facts; the floor only guards against a regression
    result = evaluate(load_eval_set(EVAL_SET)[domain], encode)
    assert result["right_fact_injected"] >= floor, result["failures"]
    assert result["unanswerable_injected"] <= 0.10, result["failures"]


def test_the_lexical_fallback_never_injects_for_unanswerable_queries() -> None:
    result = evaluate(load_eval_set(EVAL_SET), None)
    assert result["unanswerable_injected"] <= 0.10, result["failures"]
    assert result["right_fact_injected"] >= 0.5


def test_the_command_line_evaluator_measures_a_users_set_through_the_service(
    internal_token: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from hivemind_gateway.rag.evaluation import main
    from support.embedding import shared_embedding_url

    own = tmp_path / "mine.json"
    own.write_text(json.dumps(load_eval_set(EVAL_SET)["homelab_domain"]))
    monkeypatch.setenv("HIVEMIND_EMBEDDING_URL", shared_embedding_url(internal_token))
    monkeypatch.setenv("HIVEMIND_INTERNAL_TOKEN", internal_token)
    monkeypatch.setenv("HIVEMIND_RAG_INJECT_THRESHOLD", "0.5")
    assert main([str(own)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(printed[: printed.index("\ninject_threshold")])
    assert report["gate"]["inject_threshold"] == 0.5 and report["answerable"] == 16
    assert len(printed.split("inject_threshold")[-1].strip().splitlines()) == 1 + 21


def test_the_gate_on_the_untuned_operations_set_does_not_regress(
    encode: Callable[[list[str]], np.ndarray],
) -> None:
    # gate_eval_ops.json was written before the gate work of retrieval v2 and never tuned on;
    # today's figures (93% right, 42% of unanswerable queries with something injected) miss the
    # issue's target (95% / 10%): this floor only guards against getting worse
    ops = load_eval_set(EVAL_SET.parent / "gate_eval_ops.json")
    assert len(ops["queries"]) >= 40 and len(ops["unanswerable"]) >= 10
    result = evaluate(ops, encode)
    assert result["right_fact_injected"] >= 0.93, result["failures"]
    assert result["unanswerable_injected"] <= 0.42, result["failures"]


# Sets committed before a round of gate work and never tuned on: their figures are the honest
# estimate, short of the target (95% right / 10% of unanswerable queries injected); each
# floor only guards against getting worse.
# - gate_eval_codebase.json (facts and memories of one codebase), before the second round: 90.9%
#   right and 50.0% unanswerable injected (54.2% before camelCase names also counted whole).
# - gate_eval_datateam.json (an analytics team's facts and memories), before a later session's
#   gate work: 93.2% right, 35.7% unanswerable injected.
# - gate_eval_firmware.json (an embedded firmware team), before the gate work of the session that
#   wrote it: 84.4% right, 64.3% unanswerable injected; same-topic questions about another board,
#   tool or site sit as close to a stored item as its own questions do. Two questions of slack:
#   a CPU without bf16 embeds in float32 and may flip a borderline one.
@pytest.mark.parametrize(
    ("name", "right_floor", "unanswerable_ceiling"),
    [
        ("gate_eval_codebase.json", 0.90, 0.50),
        ("gate_eval_datateam.json", 0.93, 0.36),
        ("gate_eval_firmware.json", 0.80, 0.72),
    ],
)
def test_the_gate_on_an_untuned_set_with_memories_does_not_regress(
    encode: Callable[[list[str]], np.ndarray],
    name: str,
    right_floor: float,
    unanswerable_ceiling: float,
) -> None:
    data = load_eval_set(EVAL_SET.parent / name)
    keys = {f["key"] for f in data["facts"]} | {m["id"] for m in data["memories"]}
    assert len(keys) == len(data["facts"]) + len(data["memories"])
    assert len(data["queries"]) >= 40 and len(data["unanswerable"]) >= 10
    assert all(set(q["expected"]) <= keys for q in data["queries"])
    result = evaluate(data, encode)
    assert result["right_fact_injected"] >= right_floor, result["failures"]
    assert result["unanswerable_injected"] <= unanswerable_ceiling, result["failures"]
