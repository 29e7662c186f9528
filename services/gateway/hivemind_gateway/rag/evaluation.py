"""Measure the retrieval gate on an eval set (facts, answerable and unanswerable queries).

The same code path as ``retrieve_context`` (index, scoring, gate, margin, pinned) runs in
process with a caller-supplied encoder, so the test suite and ``make bench`` measure exactly
what a chat would get, without HTTP in the way.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hivemind_gateway.rag.calibration import CALIBRATED, SHIFTED
from hivemind_gateway.rag.scoring import GateConfig
from hivemind_gateway.rag.service import Candidates, candidates, select
from hivemind_gateway.search.index import Item, TenantIndex, mentions_time
from hivemind_gateway.storage_schema import fact_text

Encode = Callable[[list[str]], np.ndarray]


def load_eval_set(path: Path) -> dict[str, Any]:
    """The set, checked: ValueError naming the first thing that is missing or of a wrong type
    (a malformed set once ended ``hivemind rag calibrate`` with a KeyError traceback)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text") from exc
    except ValueError as exc:
        raise ValueError(f"{path} is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object with facts, queries and unanswerable")

    def rows(name: str, fields: dict[str, type], required: bool = True) -> None:
        value = data.get(name, None if required else [])
        if not isinstance(value, list):
            raise ValueError(f"{path}: {name!r} must be a list")
        for n, row in enumerate(value):
            for field, kind in fields.items():
                if not isinstance(row, dict) or not isinstance(row.get(field), kind):
                    raise ValueError(f"{path}: {name}[{n}] needs {field!r} ({kind.__name__})")

    rows("facts", {"key": str, "value": str})
    rows("queries", {"query": str, "expected": list})
    rows("unanswerable", {"query": str})
    rows("memories", {"id": str, "text": str}, required=False)
    return data


def build_index(
    facts: list[dict[str, Any]],
    encode: Encode | None,
    memories: Sequence[dict[str, Any]] = (),
) -> TenantIndex:
    """Facts (``key``, ``value``, ``tags``) and memories (``id``, ``text``, ``session_id``,
    ``speaker``) indexed as the gateway indexes them."""
    index = TenantIndex("eval")
    items = [
        Item(kind="fact", id=f["key"], text=fact_text(f["key"], f["value"]), key=f["key"],
             tags=tuple(f.get("tags", ())))
        for f in facts
    ] + [
        Item(kind="memory", id=m["id"], text=m["text"], tags=tuple(m.get("tags", ())),
             session_id=m.get("session_id"), speaker=m.get("speaker", ""),
             version=f"{n:08d}", temporal=mentions_time(m["text"]))
        for n, m in enumerate(memories)
    ]  # fmt: skip
    texts = [item.embed_input() for item in items]
    vectors = encode(texts) if encode is not None and texts else [None] * len(texts)
    for item, vec in zip(items, vectors, strict=True):
        index[item.kind].upsert(item, vec)
    return index


@dataclass
class Prepared:
    """An eval set indexed and searched once, ready to be measured under many gates."""

    index: TenantIndex
    answerable: list[dict[str, Any]]
    unanswerable: list[dict[str, Any]]
    vectors: list[np.ndarray | None]
    found: list[Candidates]


def prepare(eval_set: dict[str, Any], encode: Encode | None, split: str | None = None) -> Prepared:
    """Index the facts, embed the queries and search for each (``encode=None``: lexical only)."""
    index = build_index(eval_set["facts"], encode, eval_set.get("memories", []))
    answerable = [q for q in eval_set["queries"] if split in (None, q.get("split"))]
    unanswerable = [q for q in eval_set["unanswerable"] if split in (None, q.get("split"))]
    texts = [q["query"] for q in answerable + unanswerable]
    vectors: list[np.ndarray | None] = (
        list(encode(texts)) if encode is not None and texts else [None] * len(texts)
    )
    found = [candidates(index, v, t) for t, v in zip(texts, vectors, strict=True)]
    return Prepared(index, answerable, unanswerable, vectors, found)


def measure(prep: Prepared, cfg: GateConfig) -> dict[str, Any]:
    """The gate ``cfg`` on a prepared set."""
    top1 = injected_right = extra = 0
    failures: list[dict[str, Any]] = []
    n_ans = len(prep.answerable)
    queries = prep.answerable + prep.unanswerable
    for i, q in enumerate(queries):
        sel = select(prep.index, prep.vectors[i], q["query"], cfg=cfg, found=prep.found[i])
        injected = [s.hit.item.id for s in sel.chosen]
        if i >= n_ans:
            if injected:
                failures.append({"query": q["query"], "expected": [], "got": injected})
            continue
        expected = set(q["expected"])
        top1 += bool(sel.ranked) and sel.ranked[0].hit.item.id in expected
        hit = bool(expected & set(injected))
        injected_right += hit
        extra += len([i for i in injected if i not in expected])
        if not hit:
            failures.append({"query": q["query"], "expected": q["expected"], "got": injected})
    wrongly = sum(1 for f in failures if not f["expected"])
    n, m = max(n_ans, 1), max(len(prep.unanswerable), 1)
    return {
        "answerable": n_ans,
        "unanswerable": len(prep.unanswerable),
        "top1_accuracy": round(top1 / n, 4),
        "right_fact_injected": round(injected_right / n, 4),
        "extra_items_per_query": round(extra / n, 3),
        "unanswerable_injected": round(wrongly / m, 4),
        "failures": failures,
    }


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
    return measure(prepare(eval_set, encode, split), cfg or GateConfig())


SHIFTS = [round(s / 100, 2) for s in range(-30, 51)]
GAPS = (0.08, 0.10, 0.13, 0.16, 0.20)


def _shifted(base: GateConfig, shift: float, gap: float) -> GateConfig:
    fields = {name: round(getattr(base, name) + shift, 4) for name in SHIFTED}
    return dataclasses.replace(base, distinct_gap=gap, **fields)


def _longest_run(shifts: list[float]) -> list[float]:
    """The longest stretch of consecutive grid steps in ``shifts`` (ascending)."""
    best: list[float] = []
    run: list[float] = []
    for s in shifts:
        run = [*run, s] if run and round(s - run[-1], 2) <= 0.01 else [s]
        if len(run) > len(best):
            best = run
    return best


def calibrate(
    eval_set: dict[str, Any],
    encode: Encode,
    *,
    base: GateConfig | None = None,
    max_unanswerable: float = 0.10,
) -> dict[str, Any]:
    """The best gate for the model behind ``encode`` on ``eval_set``, with its figures."""
    base = base or GateConfig()
    prep = prepare(eval_set, encode)
    best: tuple[float, float] | None = None
    runs: dict[float, list[float]] = {}  # gap -> shifts reaching the best figure, ascending
    results: dict[tuple[float, float], dict[str, Any]] = {}
    for gap in GAPS:
        for shift in SHIFTS:
            r = measure(prep, _shifted(base, shift, gap))
            if r["unanswerable_injected"] > max_unanswerable:
                continue
            results[(gap, shift)] = r
            score = (r["right_fact_injected"], -r["unanswerable_injected"])
            if best is None or score > best:
                best, runs = score, {}
            if score == best:
                runs.setdefault(gap, []).append(shift)
    if best is None:
        raise ValueError(
            f"no setting keeps unanswerable injections at or below {max_unanswerable:.0%}"
        )
    # the widest run of equally good neighbouring shifts, and its middle: the least fragile
    gap, shifts = max(
        ((g, _longest_run(s)) for g, s in runs.items()),
        key=lambda kv: (len(kv[1]), -abs(kv[0] - base.distinct_gap)),
    )
    shift = shifts[len(shifts) // 2]
    chosen = _shifted(base, shift, gap)
    figures = results[(gap, shift)]
    return {
        "gate": {name: getattr(chosen, name) for name in CALIBRATED},
        "shift": shift,
        "equally_good_shifts": [min(shifts), max(shifts)],
        "right_fact_injected": figures["right_fact_injected"],
        "unanswerable_injected": figures["unanswerable_injected"],
        "top1_accuracy": figures["top1_accuracy"],
        "answerable": figures["answerable"],
        "unanswerable": figures["unanswerable"],
    }


def service_encoder(settings: Any) -> tuple[Encode, str]:
    """Embed through the running embedding service (the model the gateway really uses); also
    the id of the model that answers."""
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

    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        probe = client.post("/embed", json={"texts": ["calibration probe"]})
        probe.raise_for_status()
        model = str(probe.json()["model"])
    return encode, model


def main(argv: list[str] | None = None) -> int:
    """``python -m hivemind_gateway.rag.evaluation SET.json``: the gate on your own facts.

    The set is ``{"facts": [{key, value, tags?}], "queries": [{query, expected: [key]}],
    "unanswerable": [{query}]}``. Prints the figures for the gate as configured (the
    ``HIVEMIND_RAG_*`` settings) and how they move with the inject threshold, so a new embedding
    model can be calibrated on data like yours.
    """
    import argparse
    import dataclasses

    from hivemind_gateway.rag.gate import gate_for
    from hivemind_gateway.settings import GatewaySettings

    parser = argparse.ArgumentParser(prog="python -m hivemind_gateway.rag.evaluation")
    parser.add_argument("eval_set", type=Path)
    args = parser.parse_args(argv)
    settings = GatewaySettings()
    data = load_eval_set(args.eval_set)
    encode, _ = service_encoder(settings)
    vectors: dict[str, np.ndarray] = {}

    def cached(texts: list[str]) -> np.ndarray:  # the sweep re-encodes the same texts
        todo = [t for t in dict.fromkeys(texts) if t not in vectors]
        if todo:
            vectors.update(zip(todo, encode(todo), strict=True))
        return np.stack([vectors[t] for t in texts])

    cfg = gate_for(settings, None)
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
