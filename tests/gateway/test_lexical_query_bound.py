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


def test_a_long_run_of_letters_is_tokenized_without_quadratic_backtracking() -> None:
    # the compound-word pattern once re-entered a run at every letter: 100k letters took 86 s
    # on the event loop (a CJK paragraph, a hex dump); with the fix it is milliseconds, so a
    # generous deadline separates the two without timing anything
    import threading

    done: list[list[str]] = []
    worker = threading.Thread(
        target=lambda: done.append(lexical.tokenize("x" * 200_000 + " re-index " + "語" * 50_000)),
        daemon=True,
    )
    worker.start()
    worker.join(timeout=60)
    assert done, "tokenize did not finish within 60 s"
    assert done[0] == ["x" * lexical.MAX_WORD, "index", "語" * lexical.MAX_WORD, "reindex"]


def test_hyphenated_words_still_count_joined() -> None:
    assert lexical.tokenize("Pi-hole") == ["pi", "hole", "pihol"]
    assert lexical.tokenize("a-b-c x--y") == ["b", "c", "x", "y", "abc"]
