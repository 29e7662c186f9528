"""Measure the retrieval gate on an eval set (facts, answerable and unanswerable queries).

The same code path as ``retrieve_context`` (index, scoring, gate, margin, pinned) runs in
process with a caller-supplied encoder, so the test suite and ``make bench`` measure exactly
what a chat would get, without HTTP in the way.
"""

from __future__ import annotations

import json
import sys
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


def _service_encoder(settings: Any) -> Encode:
    """Embed through the running embedding service (the model the gateway really uses)."""
    import httpx

    from hivemind_common.hosts import service_url

    url = settings.embedding_url or service_url("embedding", profile=settings.profile)
    headers = {"Authorization": f"Bearer {settings.require_internal_token()}"}

    def encode(texts: list[str]) -> np.ndarray:
        rows: list[np.ndarray] = []
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            for i in range(0, len(texts), 64):
                r = client.post("/embed", json={"texts": texts[i : i + 64]})
                r.raise_for_status()
                rows.append(np.asarray(r.json()["embeddings"], dtype=np.float32))
        return np.concatenate(rows) if rows else np.zeros((0, 0), dtype=np.float32)

    return encode


def main(argv: list[str] | None = None) -> int:
    """``python -m hivemind_gateway.rag.evaluation SET.json``: the gate on your own facts.

    The set is ``{"facts": [{key, value, tags?}], "queries": [{query, expected: [key]}],
    "unanswerable": [{query}]}``. Prints the figures for the gate as configured (the
    ``HIVEMIND_RAG_*`` settings) and how they move with the inject threshold, so a new embedding
    model can be calibrated on data like yours.
    """
    import argparse
    import dataclasses
    from types import SimpleNamespace

    from hivemind_gateway.rag.service import gate_config
    from hivemind_gateway.settings import GatewaySettings

    parser = argparse.ArgumentParser(prog="python -m hivemind_gateway.rag.evaluation")
    parser.add_argument("eval_set", type=Path)
    args = parser.parse_args(argv)
    settings = GatewaySettings()
    data = load_eval_set(args.eval_set)
    encode = _service_encoder(settings)
    vectors: dict[str, np.ndarray] = {}

    def cached(texts: list[str]) -> np.ndarray:  # the sweep re-encodes the same texts
        todo = [t for t in dict.fromkeys(texts) if t not in vectors]
        if todo:
            vectors.update(zip(todo, encode(todo), strict=True))
        return np.stack([vectors[t] for t in texts])

    cfg = gate_config(SimpleNamespace(settings=settings))
    result = evaluate(data, cached, cfg=cfg)
    out = sys.stdout.write
    out(json.dumps({"gate": dataclasses.asdict(cfg), **result}, indent=2) + "\n")
    out("\ninject_threshold  right_fact_injected  unanswerable_injected\n")
    for step in range(20, 62, 2):
        t = step / 100
        swept = evaluate(data, cached, cfg=dataclasses.replace(cfg, inject_threshold=t))
        right, wrong = swept["right_fact_injected"], swept["unanswerable_injected"]
        out(f"{t:16.2f}  {right:19.3f}  {wrong:21.3f}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
