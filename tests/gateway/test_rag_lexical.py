"""Retrieval v2 in process: the analyzer, field weights, neighbours, fusion, sessions, time."""

from __future__ import annotations

import json

import numpy as np

from hivemind_gateway.rag.gate import gate_for
from hivemind_gateway.rag.scoring import GateConfig, asks_when, query_window, rank
from hivemind_gateway.search.index import Hit, Item, KindIndex, TenantIndex
from hivemind_gateway.search.lexical import STOPWORDS, LexicalIndex, tokenize
from hivemind_gateway.settings import GatewaySettings
from hivemind_gateway.storage_schema import memory_item, parse_time


def test_the_analyzer_stems_inflections_to_one_term() -> None:
    assert tokenize("painting") == tokenize("paints") == tokenize("painted")
    assert tokenize("recommended")[0] == tokenize("recommendations")[0][: len("recommend")]
    assert tokenize("agencies") == tokenize("agency")
    assert tokenize("camping trips") == tokenize("camped trip")


def test_stop_words_question_words_and_small_talk_are_not_counted() -> None:
    assert tokenize("What did she tell you about it when they were there?") == []
    assert tokenize("Hey, thanks! Yeah, that's awesome, wow") == []
    assert tokenize("What is Caroline's identity?") == ["carolin", "ident"]
    assert {"when", "which", "the", "yeah"} <= STOPWORDS


def test_numbers_and_identifiers_are_kept_and_split_sensibly() -> None:
    assert tokenize("port 6379 on redisHost") == ["port", "6379", "redi", "host", "redishost"]
    assert "café" in tokenize("Le café") or "caf" in tokenize("Le café")[0]


def test_a_camel_case_name_also_counts_whole() -> None:
    """A fact's "PagerDuty" meets "pagerduty" typed in a query, as "Pi-hole" meets "pihole"."""
    assert set(tokenize("pagerduty schedule")) <= set(tokenize("The schedule is in PagerDuty"))
    assert set(tokenize("oomkilled pods")) <= set(tokenize("pods were OOMKilled"))
    assert {"pager", "duti"} <= set(tokenize("PagerDuty"))  # and its parts, as before
    assert tokenize("plain words only") == tokenize("plain words only".upper().lower())


def test_a_heavier_field_scores_its_words_higher() -> None:
    lex = LexicalIndex()
    lex.add(0, [("editor settings", 1.0), ("neovim", 2.0)])
    lex.add(1, [("editor settings", 1.0), ("neovim", 0.5)])
    bm25, cover = lex.score("neovim")
    assert bm25[0] > bm25[1] > 0
    assert cover[0] == 1.0 and cover[1] == 0.5  # a light field counts a share of coverage


def _memory(i: int, text: str, session: str | None = "s1", **metadata: object) -> Item:
    record = {
        "text": text,
        "session_id": session or "",
        "tags": "[]",
        "metadata": json.dumps(metadata),
        "created_at": f"{1000 + i:.6f}",
    }
    return memory_item(f"m{i}", record)


def test_a_memory_is_found_by_the_words_of_its_neighbouring_turns() -> None:
    index = KindIndex()
    index.upsert(_memory(0, "Did you finish the marathon in Berlin?"), None)
    index.upsert(_memory(1, "Yes! It took me four hours."), None)
    index.upsert(_memory(2, "Unrelated: the cat is asleep.", session="s2"), None)
    found = {h.item.id: h.lexical for h in index.search(None, "berlin marathon", k=5)}
    assert found["m0"] > found["m1"] > 0  # the answer turn is found by its question's words
    assert "m2" not in found
    index.remove("m0")
    assert "m1" not in {h.item.id for h in index.search(None, "berlin marathon", k=5)}


def test_neighbours_follow_the_session_order_not_the_arrival_order() -> None:
    index = KindIndex()
    index.upsert(_memory(2, "third"), None)
    index.upsert(_memory(0, "first"), None)
    index.upsert(_memory(1, "second"), None)
    assert [n.text for n in index.neighbours(index.items["m1"])] == ["first", "third"]


def test_a_memory_carries_its_speaker_and_time_from_metadata() -> None:
    text = "I went to the support group yesterday"
    item = _memory(0, text, speaker="Caroline", date="2023-05-08")
    assert item.speaker == "Caroline" and item.temporal
    assert item.when == parse_time("2023-05-08T00:00:00+00:00")
    assert item.embed_input() == "Caroline: I went to the support group yesterday"
    index = KindIndex()
    index.upsert(item, None)
    assert {h.item.id for h in index.search(None, "what did caroline do", k=5)} == {"m0"}
    assert parse_time("not a date") is None and parse_time(1_700_000_000) == 1_700_000_000.0


def _hit(item: Item, dense: float, lexical: float) -> Hit:
    return Hit(item, dense, lexical, lexical)


def test_fusion_weights_decide_between_dense_and_lexical_evidence() -> None:
    by_meaning = _hit(_memory(0, "a", session=None), dense=0.9, lexical=0.0)
    by_words = _hit(_memory(1, "b", session=None), dense=0.2, lexical=0.9)
    filler = [_hit(_memory(i, "c", session=None), dense=0.3, lexical=0.1) for i in range(2, 6)]
    hits = [by_meaning, by_words, *filler]
    dense_first = rank(hits, dense_mode=True, cfg=GateConfig(rank_dense=0.8, rank_lexical=0.2))
    words_first = rank(hits, dense_mode=True, cfg=GateConfig(rank_dense=0.2, rank_lexical=0.8))
    assert dense_first[0].hit is by_meaning and words_first[0].hit is by_words


def test_fusion_weights_are_read_from_settings() -> None:
    settings = GatewaySettings(
        rag_rank_dense=0.7, rag_rank_lexical=0.3, rag_session_weight=0.0, rag_time_boost=1.5
    )
    cfg = gate_for(settings, None)
    assert (cfg.rank_dense, cfg.rank_lexical, cfg.session_weight, cfg.time_boost) == (
        0.7,
        0.3,
        0.0,
        1.5,
    )
    assert gate_for(GatewaySettings(), None).rank_dense == 0.5


def test_a_turn_in_a_session_with_strong_evidence_ranks_above_an_isolated_one() -> None:
    strong_session = [_hit(_memory(0, "x", session="a"), 0.5, 0.8)]
    candidate_a = _hit(_memory(1, "y", session="a"), 0.4, 0.3)
    candidate_b = _hit(_memory(2, "z", session="b"), 0.4, 0.31)
    hits = [*strong_session, candidate_a, candidate_b]
    plain = rank(hits, dense_mode=True, cfg=GateConfig(session_weight=0.0))
    aware = rank(hits, dense_mode=True, cfg=GateConfig(session_weight=0.5))
    order = [s.hit.item.id for s in plain]
    assert order.index("m2") < order.index("m1")
    order = [s.hit.item.id for s in aware]
    assert order.index("m1") < order.index("m2")


def test_a_when_question_boosts_turns_that_say_when() -> None:
    dated = _hit(_memory(0, "We moved to Lisbon last spring", session=None), 0.5, 0.4)
    undated = _hit(_memory(1, "We moved to Lisbon with the kids", session=None), 0.5, 0.45)
    filler = [_hit(_memory(i, "other", session=None), 0.3, 0.1) for i in range(2, 6)]
    hits = [dated, undated, *filler]
    cfg = GateConfig(time_boost=0.4)
    assert asks_when("When did they move to Lisbon?")
    assert not asks_when("Where did they move?")
    when = rank(hits, dense_mode=True, cfg=cfg, query="When did they move to Lisbon?")
    where = rank(hits, dense_mode=True, cfg=cfg, query="Where did they move to?")
    assert when[0].hit is dated and where[0].hit is undated
    assert when[0].score == dated.dense + cfg.w_lex * dated.lexical  # the gate's score is absolute


def test_an_item_waiting_for_its_vector_is_ranked_by_its_words() -> None:
    index = TenantIndex("t")
    vec = np.ones(4, dtype=np.float32) / 2
    index["memory"].upsert(_memory(0, "kubernetes upgrade notes", session=None), vec)
    index["memory"].upsert(_memory(1, "postgres vacuum notes", session=None), None)
    assert list(index["memory"].pending) == ["m1"]
    hits = index["memory"].search(vec, "postgres vacuum", k=5)
    ranked = rank(hits, dense_mode=True, cfg=GateConfig(), query="postgres vacuum")
    assert ranked[0].hit.item.id == "m1" and ranked[0].hit.dense is None
    index["memory"].set_vector("m1", vec)
    assert not index["memory"].pending
    after = {h.item.id: h for h in index["memory"].search(vec, "postgres vacuum", k=5)}
    assert after["m1"].dense is not None and after["m1"].lexical == ranked[0].hit.lexical


def test_a_query_naming_a_date_boosts_memories_dated_then() -> None:
    def dated(i: int, date: str) -> Hit:
        return _hit(_memory(i, "we cooked dinner", session=None, date=date), 0.5, 0.5)

    june, july = dated(0, "2022-06-14T18:00"), dated(1, "2022-07-02T18:00")
    filler = [_hit(_memory(i, "other", session=None), 0.3, 0.1) for i in range(2, 6)]
    hits = [june, july, *filler]
    cfg = GateConfig(date_boost=1.0)
    for query, first in (
        ("What did they cook in June 2022?", june),
        ("What did they cook on 2 July, 2022?", july),
        ("What did they cook on July 1, 2022?", july),
    ):
        assert rank(hits, dense_mode=True, cfg=cfg, query=query)[0].hit is first, query
    assert query_window("What did they cook?") is None
    feb = query_window("on 31 February, 2022")  # no such day: the month it names still counts
    assert feb is not None and feb[0] == parse_time("2022-02-01T00:00:00+00:00")


def test_injected_memories_follow_the_boosted_ranking_not_the_raw_score() -> None:
    """/v1/rag/context once ordered (and cut at max_items) by the absolute score, so the date
    boost that ordered a memory search never reached a chat."""
    from hivemind_gateway.rag.service import select

    query = "What did Caroline do in May 2022?"
    undated = _hit(_memory(0, "Caroline went hiking", session=None), 0.62, 0.5)
    dated = _hit(_memory(1, "Caroline went hiking", session=None, date="2022-05-20"), 0.55, 0.5)
    filler = [_hit(_memory(i, "other", session=None), 0.1, 0.0) for i in range(2, 6)]
    cfg = GateConfig(date_boost=1.0, max_items=1)
    found = ([], [undated, dated, *filler])
    picked = select(TenantIndex("t"), np.ones(4), query, cfg=cfg, found=found)
    assert [s.hit for s in picked.chosen] == [dated]
    assert picked.ranked[0].hit is undated  # the gate still reads absolute scores
    fact = _hit(Item(kind="fact", id="k", text="k: v", key="k"), 0.6, 0.5)  # between the two
    both = select(TenantIndex("t"), np.ones(4), query, cfg=GateConfig(date_boost=1.0),
                  found=([fact], [undated, dated, *filler]))  # fmt: skip
    assert [s.hit for s in both.chosen] == [dated, fact, undated]  # kinds keep their places
