"""A multi-megabyte chat message is scored lexically by its head and tail only."""

from __future__ import annotations

from hivemind_common.text import MAX_QUERY_CHARS
from hivemind_gateway.search import lexical
from hivemind_gateway.search.lexical import LexicalIndex, bounded_query

FILLER = "lorem ipsum dolor " * 200_000  # 3.6 MB of words


def _index() -> LexicalIndex:
    index = LexicalIndex()
    index.add(1, "quokka habitat notes")
    index.add(2, "numbat burrow notes")
    return index


def test_the_tokenizer_never_sees_more_than_the_query_limit(monkeypatch) -> None:
    seen: list[int] = []
    real = lexical.tokenize

    def counting(text: str) -> list[str]:
        seen.append(len(text))
        return real(text)

    monkeypatch.setattr(lexical, "tokenize", counting)
    _index().score(f"quokka {FILLER} numbat")
    assert seen and max(seen) <= MAX_QUERY_CHARS + 1


def test_words_at_the_head_and_tail_of_a_huge_query_still_match() -> None:
    bm25, _ = _index().score(f"quokka {FILLER} numbat")
    assert set(bm25) == {1, 2}


def test_words_in_the_middle_of_a_huge_query_are_not_scored() -> None:
    half = len(FILLER) // 2
    bm25, _ = _index().score(f"{FILLER[:half]} quokka {FILLER[half:]}")
    assert 1 not in bm25


def test_a_short_query_is_scored_whole() -> None:
    assert bounded_query("which port does redis use") == "which port does redis use"
