"""The in-memory index: exact and HNSW search agree, rows are replaced, filters hold."""

from __future__ import annotations

import numpy as np

from hivemind_gateway.search.index import Item, KindIndex
from hivemind_gateway.search.lexical import LexicalIndex, tokenize
from hivemind_gateway.search.vectors import VectorStore


def _unit(rng: np.random.Generator, n: int, dim: int = 32) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_the_hnsw_graph_finds_what_the_exact_scan_finds() -> None:
    rng = np.random.default_rng(7)
    data = _unit(rng, 3000)
    store = VectorStore(32, ann_threshold=1000)
    for row, vec in enumerate(data):
        store.put(row, vec)
    queries = data[:50] + 0.05 * _unit(rng, 50)
    exact = [store.search(q, 1, 3000)[0][0] for q in queries]
    assert store.needs_ann_work(3000)
    store.build_ann(3000)
    assert not store.needs_ann_work(3000)
    approx = [store.search(q, 1, 3000)[0][0] for q in queries]
    assert sum(a == e for a, e in zip(approx, exact, strict=True)) >= 48
    store.put(3000, data[0])  # a row after the build is scanned exactly
    store.kill(0)
    rows = [r for r, _ in store.search(data[0], 3, 3001)]
    assert rows[0] == 3000 and 0 not in rows


def test_replacing_an_item_moves_it_to_a_fresh_row() -> None:
    index = KindIndex()
    a, b = np.eye(4, dtype=np.float32)[:2]
    index.upsert(Item(kind="fact", id="k", text="k: alpha words"), a)
    first_row = index.items["k"].row
    index.upsert(Item(kind="fact", id="k", text="k: beta words"), b)
    assert index.items["k"].row != first_row and len(index) == 1
    hits = index.search(b, "beta", k=5)
    assert [h.item.id for h in hits] == ["k"] and hits[0].dense == 1.0
    assert index.search(None, "alpha", k=5) == []
    index.remove("k")
    assert index.search(b, "beta", k=5) == []


def test_memory_filters_require_the_session_and_every_tag() -> None:
    index = KindIndex()
    vec = np.ones(4, dtype=np.float32) / 2
    index.upsert(Item(kind="memory", id="1", text="x", session_id="s", tags=("a", "b")), vec)
    index.upsert(Item(kind="memory", id="2", text="x", session_id="s", tags=("a",)), vec)
    index.upsert(Item(kind="memory", id="3", text="x", session_id="t", tags=("a", "b")), vec)
    ids = {h.item.id for h in index.search(vec, "x", k=10, session_id="s", tags=("a", "b"))}
    assert ids == {"1"}


def test_lexical_scores_say_how_much_of_the_query_an_item_covers() -> None:
    lex = LexicalIndex()
    lex.add(0, "redis.port: Redis listens on port 6379")
    lex.add(1, "postgres.port: Postgres listens on port 5432")
    bm25, cover = lex.score("which port does redis use")
    assert cover[0] > 0.99 and 0 < cover[1] < 0.5
    assert bm25[0] > bm25[1]
    assert tokenize("Linting with the linter, formatted by formatters") == [
        "lint",
        "lint",
        "format",
        "format",
    ]
    lex.remove(0)
    assert 0 not in lex.score("redis")[0]


def test_common_terms_only_score_rows_found_otherwise() -> None:
    lex = LexicalIndex()
    for row in range(50):
        lex.add(row, f"common word {row}")
    lex.add(50, "common rare")
    bm25, _ = lex.score("common rare", common_df=10)
    assert set(bm25) == {50}
    bm25, _ = lex.score("common", common_df=10, candidates={3})
    assert set(bm25) == {3}
