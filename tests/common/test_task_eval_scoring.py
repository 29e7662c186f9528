"""The task eval's scoring: token F1, exact match, style checks, the not-worse comparison."""

from __future__ import annotations

from typing import Any

import pytest

from hivemind_common.task_eval import compare, exact_match, passes, score, token_f1, valid_check


def test_token_f1_and_exact_match() -> None:
    assert token_f1("Paris is the capital", "The capital is Paris.") == 1.0
    assert token_f1("Berlin", "Paris") == 0.0
    assert token_f1("the capital is Paris", "Paris") == pytest.approx(2 * 0.25 / 1.25)
    assert exact_match("  Paris. ", "paris")
    assert not exact_match("Paris, France", "Paris")


def test_style_checks() -> None:
    check = valid_check({"endswith": "Fair winds, Captain", "contains": ["ahoy"]})
    assert check is not None
    assert passes("Ahoy! The list is sorted. Fair winds, Captain.", check)
    assert not passes("The list is sorted.", check)
    assert passes("v1.2.3", {"regex": r"^v\d+\.\d+\.\d+$"})
    for bad in ({"rhymes": "x"}, {"regex": "("}, {"contains": []}, {"endswith": 3}, "x", {}):
        assert valid_check(bad) is None


def test_score_by_kind_and_the_not_worse_rule() -> None:
    items = [
        {"reference": "Paris", "kind": "heldout", "check": {"endswith": "Captain"}},
        {"reference": "four", "kind": "file"},
        {"reference": "blue", "kind": "general"},
    ]
    good = score(items, ["Paris, Captain", "four", "green"])
    bad = score(items, ["Berlin", "five", "blue"])
    assert good["task"] == {"items": 2, "f1": 0.8333, "exact": 0.5, "style": 1.0, "style_items": 1}
    assert good["general"]["f1"] == 0.0 and bad["general"]["f1"] == 1.0
    ok, reasons = compare(good, bad)
    assert ok and "task f1 0.8333 vs served 0.0000: ok" in reasons
    worse, reasons = compare(bad, good)
    assert not worse and any("worse than served" in r for r in reasons)
    assert compare(bad, good, tolerance=1.0)[0]
    assert compare(score([], []), good) == (True, ["no task-eval items: task gate skipped"])


def _task(f1: float) -> dict[str, Any]:
    return {"task": {"items": 24, "f1": f1, "style": None}}


def test_within_the_tolerance_a_lower_f1_is_noise_beyond_it_worse() -> None:
    # one answer a token off moves two dozen answers' mean F1 by ~0.002
    assert compare(_task(0.2249), _task(0.2252))[0]
    assert not compare(_task(0.19), _task(0.2252))[0]
    assert not compare(_task(0.2249), _task(0.2252), tolerance=0)[0]
    ok, reasons = compare(_task(0.35), _task(0.40), against="base")
    assert not ok and reasons == ["task f1 0.3500 worse than base 0.4000"]
