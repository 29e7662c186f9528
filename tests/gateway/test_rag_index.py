"""The in-memory index: exact and HNSW search agree, rows are replaced, filters hold."""

from __future__ import annotations

import numpy as np
import pytest

from hivemind_gateway.rag.scoring import GateConfig
from hivemind_gateway.rag.service import select
from hivemind_gateway.search.index import Item, KindIndex, TenantIndex
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
    assert tokenize("Linting the code, formatted by the formatting step") == [
        "lint",
        "code",
        "format",
        "format",
        "step",
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


def test_lexical_scores_follow_every_write_after_a_query_has_read_them() -> None:
    lex = LexicalIndex()
    lex.add(0, "redis listens on port 6379")
    lex.add(1, "postgres listens on port 5432")
    assert set(lex.score("port")[0]) == {0, 1}  # the postings are now read as arrays
    lex.add(1, "postgres takes connections on 5432")  # replaced: no longer says "port"
    lex.move(0, 7)
    lex.add(2, "the port of the api is 8080")
    bm25, cover = lex.score("port")
    assert set(bm25) == {7, 2} and cover[7] == pytest.approx(1.0)
    rows, scores, _ = lex.score_arrays("port")
    assert rows.tolist() == [2, 7] and scores.tolist() == [bm25[2], bm25[7]]
    lex.remove(7)
    assert set(lex.score("port listens")[0]) == {2}


def test_a_filtered_search_takes_its_lexical_candidates_from_inside_the_filter() -> None:
    index = KindIndex()
    for n in range(80):  # outside the session: these say "deploy" twice, ranking higher
        index.upsert(
            Item(kind="memory", id=f"o{n}", text="deploy deploy", session_id="other"), None
        )
    index.upsert(Item(kind="memory", id="in", text="we deploy on fridays", session_id="s1"), None)
    hits = index.search(None, "deploy", k=10, session_id="s1")
    assert [h.item.id for h in hits] == ["in"] and hits[0].lexical > 0


def test_a_hyphenated_word_also_matches_its_joined_spelling() -> None:
    assert tokenize("pihole")[0] in tokenize("DNS is served by Pi-hole")
    assert {"wi", "fi", "wifi"} <= set(tokenize("the wi-fi password"))
    index = LexicalIndex()
    index.add(0, "dns: Local DNS is served by Pi-hole on 10.0.0.53")
    index.add(1, "router: the router is at 10.0.0.1")
    bm25, _ = index.score("is the pihole down")
    assert bm25.get(0, 0.0) > 0 and bm25.get(1, 0.0) == 0


def _query_with_cosines(cosines: list[float]) -> tuple[TenantIndex, np.ndarray]:
    """A tenant whose facts sit at the given cosines from the returned query vector."""
    dim = len(cosines) + 1
    index = TenantIndex("t")
    q = np.zeros(dim, dtype=np.float32)
    q[0] = 1.0
    for i, c in enumerate(cosines):
        v = np.zeros(dim, dtype=np.float32)
        v[0], v[i + 1] = c, float(np.sqrt(1 - c * c))
        index["fact"].upsert(Item(kind="fact", id=f"f{i}", text=f"zz{i}: qq{i}"), v)
    return index, q


@pytest.mark.parametrize(
    ("cosines", "injected"),
    [
        ([0.33, 0.12, 0.05], ["f0"]),  # near, and far ahead of the runner-up
        ([0.33, 0.25, 0.05], []),  # near, but the runner-up is as close: no evidence
        ([0.33], []),  # alone: no runner-up to stand apart from
        ([0.22, 0.02], []),  # ahead, but not even near
        ([0.55, 0.50], ["f0", "f1"]),  # the absolute threshold, as before
    ],
)
def test_a_near_best_item_is_injected_only_when_it_stands_apart(
    cosines: list[float], injected: list[str]
) -> None:
    index, q = _query_with_cosines(cosines)
    sel = select(index, q, "no shared words here", cfg=GateConfig())
    assert [s.hit.item.id for s in sel.chosen] == injected


def test_dead_vectors_are_compacted_away_and_search_is_unchanged() -> None:
    rng = np.random.default_rng(3)
    data = _unit(rng, 4000)
    store = VectorStore(32, ann_threshold=10**9, compact_min=500)
    for row, vec in enumerate(data):
        store.put(row, vec)
    for row in range(0, 4000, 4):
        store.kill(row)
    for row in range(1, 4000, 4):
        store.kill(row)  # now half are dead: the store compacts
    assert store.compactions >= 1 and store.slots == store.count == 2000
    live = np.array([r for r in range(4000) if r % 4 >= 2])
    for q in data[:20]:
        want = live[np.argsort(-(data[live] @ q))[:5]]
        assert [r for r, _ in store.search(q, 5, 4000)] == list(want)
        assert store.vector(int(live[0])) is not None and store.vector(0) is None
    store.put(4000, data[0])  # rows keep growing after a compaction
    assert store.search(data[0], 1, 4001)[0][0] == 4000
    allowed = np.zeros(4001, dtype=bool)
    allowed[[2, 3, 4000]] = True
    assert {r for r, _ in store.search(data[0], 5, 4001, allowed)} == {2, 3, 4000}


def test_updating_the_same_items_all_day_keeps_memory_bounded() -> None:
    index = KindIndex(ann_threshold=10**9)
    rng = np.random.default_rng(5)
    vecs = _unit(rng, 10)
    for i in range(12_000):
        index.upsert(Item(kind="fact", id=f"k{i % 10}", text=f"k{i % 10}: v{i}"), vecs[i % 10])
    store = index.vectors
    assert store is not None and store.count == 10
    assert store.matrix.shape[0] < 12_000 and store.slots <= 4096 + 11
    assert [h.item.id for h in index.search(vecs[3], "", k=1)][:1] == ["k3"]


def test_a_graph_full_of_dead_rows_is_rebuilt_and_search_stays_right() -> None:
    rng = np.random.default_rng(9)
    data = _unit(rng, 3000)
    store = VectorStore(32, ann_threshold=500, compact_min=500)
    for row, vec in enumerate(data):
        store.put(row, vec)
    store.build_ann(3000)
    for row in range(2000):
        store.kill(row)
    assert store._ann is None  # dropped: it held twice as many dead rows as live ones
    assert store.search(data[2500], 1, 3000)[0][0] == 2500
    assert store.needs_ann_work(3000)
    store.build_ann(3000)
    assert store.search(data[2500], 1, 3000)[0][0] == 2500
    assert store.search(data[10], 3, 3000)[0][0] >= 2000


def test_the_gate_takes_overrides_from_settings_and_keeps_the_rest() -> None:
    from types import SimpleNamespace

    from hivemind_gateway.rag.gate import gate_config
    from hivemind_gateway.settings import GatewaySettings

    state = SimpleNamespace(  # the fields of GatewayState that gate_config reads
        settings=GatewaySettings(rag_inject_threshold=0.55, rag_max_items=3),
        search=SimpleNamespace(embedder=SimpleNamespace(model_id=None)),
        rag_gate=None,
        rag_gate_model=None,
    )
    cfg = gate_config(state)
    assert (cfg.inject_threshold, cfg.max_items) == (0.55, 3)
    assert cfg.margin == GateConfig().margin and gate_config(state) is cfg
    with pytest.raises(ValueError):
        GatewaySettings(rag_margin=-1)


def test_chunks_after_their_sections_best_are_folded_out_of_the_gate() -> None:
    from hivemind_gateway.rag.scoring import Scored, fold_sections
    from hivemind_gateway.search.index import DocRef, Hit

    def chunk(cid: str, doc: str, heading: str, lines: tuple[int, int], ok: bool = True) -> Scored:
        ref = DocRef(doc, "default", f"{doc}.md", lines[0], lines[1], heading)
        item = Item(kind="doc", id=cid, text=cid, doc=ref)
        return Scored(Hit(item, 0.5, 1.0, 1.0), 0.6, passes=ok, reason="passed")

    ranked = [
        chunk("x1", "a", "Guide > Rolling back", (1, 4), ok=False),  # ranked first, gated out
        chunk("a1", "a", "Guide > Rolling back", (5, 9)),
        chunk("b1", "b", "Guide > Rolling back", (5, 9)),  # another document: its own section
        chunk("a2", "a", "Guide > Rolling back", (8, 12)),  # overlaps a1: a fragment of it
        chunk("a3", "a", "Guide > Rolling back", (14, 15)),  # after a blank line: the same run
        chunk("m1", "a", "module", (40, 44)),
        chunk("m2", "a", "module", (90, 95)),  # one heading, far apart: another section
        chunk("t1", "t", "", (1, 3)),  # plain text has no sections: never folded
        chunk("t2", "t", "", (3, 6)),
    ]
    out = fold_sections(ranked)
    assert out is ranked
    # the gated-out chunk neither claims its section nor is folded: a1 is the section's passage
    assert [s.hit.item.id for s in out if s.folded] == ["a2", "a3"]
    assert [s.hit.item.id for s in out if s.passes] == ["a1", "b1", "m1", "m2", "t1", "t2"]
    assert "folded" in out[3].reason and "(a1)" in out[3].reason
    assert out[0].reason == "passed"


def test_a_code_files_module_chunk_hands_its_place_to_the_files_best_definition() -> None:
    from hivemind_gateway.rag.scoring import Scored, definitions_first
    from hivemind_gateway.search.index import DocRef, Hit

    def chunk(
        cid: str, doc: str, heading: str, rank: float, ok: bool = True, score: float = 0.6,
        ext: str = ".py",
    ) -> Scored:  # fmt: skip
        ref = DocRef(doc, "default", f"{doc}{ext}", 1, 5, heading)
        item = Item(kind="doc", id=cid, text=cid, doc=ref)
        return Scored(Hit(item, 0.5, 1.0, 1.0), score, passes=ok, rank=rank)

    ranked = [
        chunk("a.module", "a", "module", 9.0),  # a's docstring: ranked first
        chunk("page", "p", "Guide > Caching", 8.0),
        chunk("b.module", "b", "module", 7.0),  # b has no definition among the candidates
        chunk("a.gone", "a", "def gated_out", 6.5, ok=False),  # not a passage: never moved
        chunk("a.put", "a", "def cache_put", 6.0),  # a's best passing definition
        chunk("a.module2", "a", "module", 5.0),  # a's second module block: a hands once
        chunk("a.get", "a", "def cache_get", 4.0),
    ]
    out = definitions_first(ranked)
    # the passages move one place down to make room; a chunk the gate keeps out keeps its slot
    assert [s.hit.item.id for s in out] == [
        "a.put", "a.module", "page", "a.gone", "b.module", "a.module2", "a.get",
    ]  # fmt: skip
    # ranks follow the new order, so anything that sorts by rank again keeps it
    passing = [s for s in out if s.passes]
    assert [s.rank for s in passing] == sorted((s.rank for s in passing), reverse=True)
    assert out[0].rank == 9.0 and 8.0 < out[1].rank < 9.0
    assert "before its file's module block" in out[0].reason
    # a definition above its module chunk stays where it is; the module chunk still hands its
    # place to the file's next definition (more code of the file it summarises)
    again = [
        chunk("d", "c", "def f", 3.0), chunk("m", "c", "module", 2.0),
        chunk("x", "x", "Guide", 1.5), chunk("g", "c", "def g", 1.0),
    ]  # fmt: skip
    assert [s.hit.item.id for s in definitions_first(again)] == ["d", "g", "m", "x"]
    # with a margin, a definition scoring far below the module chunk stays where it was
    weak = [chunk("m", "c", "module", 3.0, score=0.8), chunk("g", "c", "def g", 1.0, score=0.5)]
    assert [s.hit.item.id for s in definitions_first(weak, margin=0.15)] == ["m", "g"]
    assert [s.hit.item.id for s in definitions_first(weak, margin=0.4)] == ["g", "m"]
    # a Markdown section titled "module" is a page's section, not a code file's module block
    page = [chunk("m", "p", "module", 3.0, ext=".md"), chunk("s", "p", "Setup", 1.0, ext=".md")]
    assert [s.hit.item.id for s in definitions_first(page)] == ["m", "s"]
    # every chunk may move when the caller says so (a search shows what the gate keeps out)
    shown = definitions_first(
        [chunk("m", "c", "module", 3.0), chunk("d", "c", "def f", 2.0, ok=False)],
        among=lambda s: True,
    )
    assert [s.hit.item.id for s in shown] == ["d", "m"]


def test_each_documents_topic_is_the_mean_of_its_live_chunk_vectors() -> None:
    """The sum behind a document's topic follows every write: a chunk added, its vector set
    later, a chunk replaced or removed, a document emptied, the model changed."""
    from hivemind_gateway.search.index import DocRef

    rng = np.random.default_rng(7)
    vecs = _unit(rng, 6)
    ix = KindIndex()

    def chunk(cid: str, doc: str) -> Item:
        return Item(kind="doc", id=cid, text=cid, doc=DocRef(doc, "default", f"{doc}.md", 1, 2))

    def mean(*rows: int) -> np.ndarray:
        m = vecs[list(rows)].astype(np.float64).sum(axis=0)
        return m / np.linalg.norm(m)

    ix.upsert(chunk("a1", "a"), vecs[0])
    ix.upsert(chunk("a2", "a"), None)  # its vector comes later
    ix.upsert(chunk("b1", "b"), vecs[2])
    assert np.allclose(ix.doc_vector("a"), mean(0)) and np.allclose(ix.doc_vector("b"), mean(2))
    ix.set_vector("a2", vecs[1])
    assert np.allclose(ix.doc_vector("a"), mean(0, 1))
    ix.set_vector("a2", vecs[3])  # a vector made again replaces the old one in the sum
    assert np.allclose(ix.doc_vector("a"), mean(0, 3))
    ix.upsert(chunk("a1", "a"), vecs[4])  # the chunk rewritten
    assert np.allclose(ix.doc_vector("a"), mean(4, 3))
    ix.remove("a1")
    assert np.allclose(ix.doc_vector("a"), mean(3))
    ix.remove("a2")
    assert ix.doc_vector("a") is None and "a" not in ix.doc_counts
    ix.upsert(Item(kind="doc", id="wide", text="w", doc=DocRef("b", "default", "b.md", 1, 2)),
              np.ones(8, dtype=np.float32) / np.sqrt(8))  # fmt: skip
    assert ix.doc_vector("b").shape == (8,)  # another model: the old space's sums are gone
    assert ix.doc_counts == {"b": 1}
    ix.drop_vectors()
    assert ix.doc_vector("b") is None


def test_a_chunk_ranks_with_its_documents_topic() -> None:
    """A chunk is a few lines: the one whose own text matches a little better can sit in a file
    about something else, while the file the question is about ranks a terser chunk lower."""
    from hivemind_gateway.rag.scoring import Scored, by_document
    from hivemind_gateway.search.index import DocRef, Hit

    query = np.array([1.0, 0.0, 0.0])
    topics = {"cache": np.array([0.9, 0.436, 0.0]), "guide": np.array([0.2, 0.98, 0.0])}

    def chunk(cid: str, doc: str | None, rank: float) -> Scored:
        ref = DocRef(doc, "default", f"{doc}.py", 1, 5) if doc else None
        item = Item(kind="doc", id=cid, text=cid, doc=ref)
        return Scored(Hit(item, 0.5, 0.5, 0.5), 0.5, rank=rank)

    def fresh() -> list[Scored]:  # by_document sets the ranks it reads: new ones each call
        return [chunk("guide.page", "guide", 1.0), chunk("cache.def", "cache", 0.9),
                chunk("new", "fresh", 0.8)]  # fmt: skip

    out = by_document(fresh(), topics.get, query, 0.3)
    assert [s.hit.item.id for s in out] == ["cache.def", "guide.page", "new"]
    assert [s.rank for s in out] == sorted((s.rank for s in out), reverse=True)
    # no weight, no query vector (an embedding outage): the order is the fusion's
    assert [s.hit.item.id for s in by_document(fresh(), topics.get, query, 0.0)] == [
        "guide.page", "cache.def", "new"]  # fmt: skip
    assert [s.hit.item.id for s in by_document(fresh(), topics.get, None, 0.3)] == [
        "guide.page", "cache.def", "new"]  # fmt: skip


def test_document_searches_rank_with_the_documents_topic() -> None:
    """``score_docs`` (searches and the chats' passages) ranks with it: the chunk a little
    closer to the query, in a file about something else, comes after the other file's."""
    from dataclasses import replace

    from hivemind_gateway.docs.service import score_docs
    from hivemind_gateway.search.index import DocRef

    def unit(*xs: float) -> np.ndarray:
        v = np.array(xs, dtype=np.float32)
        return v / np.linalg.norm(v)

    index = TenantIndex("t")
    docs = index["doc"]
    rows = {
        "guide.1": ("guide", unit(0.95, 0.31, 0, 0)),  # the closest chunk ...
        "guide.2": ("guide", unit(0, 1, 0, 0)),  # ... in a file about something else
        "guide.3": ("guide", unit(0, 0.9, 0.44, 0)),
        "cache.1": ("cache", unit(0.75, 0, 0.66, 0)),
        "cache.2": ("cache", unit(0.9, 0, 0, 0.44)),
        "cache.3": ("cache", unit(0.85, 0, 0.53, 0)),
    }
    for cid, (doc, vec) in rows.items():
        ref = DocRef(doc, "default", f"{doc}.py", 1, 2, f"def {cid.replace('.', '_')}")
        docs.upsert(Item(kind="doc", id=cid, text=f"text {cid}", doc=ref), vec)
    query = unit(1, 0, 0, 0)
    cfg = GateConfig()

    def order(config: GateConfig) -> list[str]:
        return [s.hit.item.id for s in score_docs(index, query, "zzz", k=6, cfg=config)]

    assert order(replace(cfg, doc_weight=0.0))[:2] == ["guide.1", "cache.2"]
    assert order(cfg)[:2] == ["cache.2", "cache.3"] and order(cfg).index("guide.1") > 2
