"""Measure the retrieval gate on an eval set (facts, answerable and unanswerable queries).

The same code path as ``retrieve_context`` (index, scoring, gate, margin, pinned) runs in
process with a caller-supplied encoder, so the test suite and ``make bench`` measure exactly
what a chat would get, without HTTP in the way.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hivemind_gateway.rag.scoring import GateConfig
from hivemind_gateway.rag.service import select
from hivemind_gateway.search.index import Item, TenantIndex
from hivemind_gateway.search.records import fact_text

Encode = Callable[[list[str]], np.ndarray]


def load_eval_set(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def build_index(facts: list[dict[str, Any]], encode: Encode | None) -> TenantIndex:
    index = TenantIndex("eval")
    texts = [fact_text(f["key"], f["value"]) for f in facts]
    vectors = encode(texts) if encode is not None else [None] * len(texts)
    for fact, text, vec in zip(facts, texts, vectors, strict=True):
        tags = tuple(fact.get("tags", ()))
        index["fact"].upsert(Item(kind="fact", id=fact["key"], text=text, tags=tags), vec)
    return index


def evaluate(
    eval_set: dict[str, Any],
    encode: Encode | None,
    *,
    cfg: GateConfig | None = None,
    split: str | None = None,
) -> dict[str, Any]:
    """Top-1 accuracy, how often the right fact is injected, how often a miss injects anything.

    ``encode=None`` measures the lexical fallback. ``split`` keeps only "calibration" or
    "holdout" queries.
    """
    cfg = cfg or GateConfig()
    index = build_index(eval_set["facts"], encode)
    answerable = [q for q in eval_set["queries"] if split in (None, q.get("split"))]
    unanswerable = [q for q in eval_set["unanswerable"] if split in (None, q.get("split"))]
    texts = [q["query"] for q in answerable + unanswerable]
    vectors = encode(texts) if encode is not None else [None] * len(texts)
    top1 = injected_right = extra = 0
    failures: list[dict[str, Any]] = []
    for q, vec in zip(answerable, vectors[: len(answerable)], strict=True):
        sel = select(index, vec, q["query"], cfg=cfg)
        injected = [s.hit.item.id for s in sel.chosen]
        expected = set(q["expected"])
        top1 += bool(sel.ranked) and sel.ranked[0].hit.item.id in expected
        hit = bool(expected & set(injected))
        injected_right += hit
        extra += len([i for i in injected if i not in expected])
        if not hit:
            failures.append({"query": q["query"], "expected": q["expected"], "got": injected})
    wrongly = 0
    for q, vec in zip(unanswerable, vectors[len(answerable) :], strict=True):
        sel = select(index, vec, q["query"], cfg=cfg)
        if sel.chosen:
            wrongly += 1
            failures.append(
                {"query": q["query"], "expected": [], "got": [s.hit.item.id for s in sel.chosen]}
            )
    n, m = max(len(answerable), 1), max(len(unanswerable), 1)
    return {
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "top1_accuracy": round(top1 / n, 4),
        "right_fact_injected": round(injected_right / n, 4),
        "extra_items_per_query": round(extra / n, 3),
        "unanswerable_injected": round(wrongly / m, 4),
        "failures": failures,
    }
