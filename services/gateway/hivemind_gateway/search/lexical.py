"""Word-level lexical scoring: an analyzer and an incremental, field-weighted BM25 index.

The analyzer lower-cases, splits camelCase and snake_case, drops stop words (English function
words, question words and the small talk of conversations, which say nothing about what an item
is about) and stems with the Snowball English stemmer (PyStemmer), so "painting" meets
"paints" and "recommended" meets "recommends". A hyphenated word also counts joined.

An item is indexed as weighted fields (a fact's key and value; a memory's text, tags, speaker,
neighbouring turn): a term's frequency is the weighted count over fields, so a word in the key
outweighs the same word in the value, and a word only in context weighs little.

Scores are normalised to [0, 1] by the query's total IDF, so a score says how much of the
query's (IDF-weighted) wording an item covers: the gate can read it as evidence, not just rank.

Postings are dicts (cheap incremental writes); a query reads each of its terms' postings as
numpy arrays, built on first use after the term last changed, and scores them vectorised: at
10k LoCoMo turns a query touches ~2,700 postings (a speaker's name is in half of them), which
the per-posting Python loop took ~11 ms for under load and numpy takes well under 1 ms.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np
import Stemmer

from hivemind_common.text import MAX_QUERY_CHARS

_WORD = re.compile(r"[^\W_]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
# a word (or a run of them) is never re-entered from inside: without the look-behind and the
# possessive repeats this took time quadratic in a long run of letters (100k: 86 s)
_COMPOUND = re.compile(r"(?<![^\W_])[^\W_]++(?:-[^\W_]++)+")
MAX_WORD = 64  # a longer "word" (a hash, a minified line) is indexed by its first 64 letters

_FUNCTION_WORDS = """
    a about above after again against all also am an and any are aren as at be because been
    before being below between both but by can cannot could couldn did didn do does doesn doing
    don done down during each either else even ever every few for from further get gets getting
    got gotten had hadn has hasn have haven having he her here hers herself him himself his i
    if in into is isn it its itself just let lets ll me mine more most much must my myself neither
    no nor not now of off on once one only onto or other others our ours ourselves out over own
    per please re s same shall she should shouldn so some such t than that the their theirs them
    themselves then there these they this those though through thus to too under until up upon
    us use used uses using ve very via was wasn we were weren what whatever when whenever where
    whereas wherever whether which while who whoever whom whose why will with within without
    won would wouldn you your yours yourself yourselves
"""
# question words and what people say to each other rather than about things
_QUESTION_WORDS = "anything describe explain kind kinds something tell type types way ways"
_SMALL_TALK = """
    absolutely actually ah aw awesome cool definitely guess hey hi hmm know lol oh ok okay
    pretty really right sure thank thanks totally wow yeah yes yep
"""
STOPWORDS = frozenset((_FUNCTION_WORDS + _QUESTION_WORDS + _SMALL_TALK).split())

K1 = 1.2
B = 0.5  # long items (a turn with its neighbours) are penalised less (LoCoMo dev sweep)

_stemmer = Stemmer.Stemmer("english")


def stem(word: str) -> str:
    """The Snowball English stem of a lower-cased word (numbers and ids stay as they are);
    a word longer than ``MAX_WORD`` is cut first, so the cache holds short keys only."""
    return _stem(word[:MAX_WORD])


@lru_cache(maxsize=65_536)
def _stem(word: str) -> str:
    return word if word.isdigit() else str(_stemmer.stemWord(word))


def _lowered_words(text: str) -> tuple[str, list[str]]:
    spaced = _CAMEL.sub(" ", text).lower()
    return spaced, _WORD.findall(spaced)


def words(text: str) -> list[tuple[str, str]]:
    """(stem, word as written) for each non-stopword, for showing topics to people."""
    _, found = _lowered_words(text)
    return [(stem(w), w) for w in found if w not in STOPWORDS]


def tokenize(text: str) -> list[str]:
    """Lower-cased, stemmed words without stop words; camelCase and snake_case are split, and
    a hyphenated or camelCase word also counts joined ("Pi-hole" meets "pihole", "PagerDuty"
    meets "pagerduty")."""
    spaced, found = _lowered_words(text)
    out = [stem(w) for w in found if w not in STOPWORDS]
    out += [stem(c.replace("-", "")) for c in _COMPOUND.findall(spaced)]
    if _CAMEL.search(text):  # a camelCase name also counts whole: "PagerDuty" meets "pagerduty"
        out += [stem(w.lower()) for w in _WORD.findall(text) if _CAMEL.search(w)]
    return out


Fields = Sequence[tuple[str, float]]


def bounded_query(text: str, limit: int = MAX_QUERY_CHARS) -> str:
    """At most ``limit`` characters of a query: its head and its tail when it is longer.

    A chat's last message can be megabytes of pasted output; scoring all of it would stall the
    event loop, and the question is usually at its start or its end.
    """
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]} {text[-half:]}"


def _weighted_counts(fields: Iterable[tuple[str, float]]) -> dict[str, float]:
    counts: dict[str, float] = {}
    for text, weight in fields:
        if weight <= 0 or not text:
            continue
        for term in tokenize(text):
            counts[term] = counts.get(term, 0.0) + weight
    return counts


class LexicalIndex:
    """Incremental BM25 postings over rows; rows are ints owned by the caller."""

    def __init__(self) -> None:
        self.postings: dict[str, dict[int, float]] = {}
        self.lengths: dict[int, float] = {}
        self._row_terms: dict[int, tuple[str, ...]] = {}
        self._total_len = 0.0
        # per term: (rows, term frequencies, the rows' lengths) as arrays, until the term changes
        self._arrays: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.lengths)

    def add(self, row: int, text: str | Fields) -> None:
        """Index ``text`` (or weighted ``(text, weight)`` fields) under ``row``, replacing it."""
        self.add_counts(row, _weighted_counts([(text, 1.0)] if isinstance(text, str) else text))

    def move(self, old: int, new: int) -> None:
        """Give the terms of row ``old`` to row ``new`` (no re-analysis)."""
        length = self.lengths.pop(old, None)
        if length is None:
            return
        self.remove(new)
        terms = self._row_terms.pop(old)
        for term in terms:
            rows = self.postings[term]
            rows[new] = rows.pop(old)
            self._arrays.pop(term, None)
        self.lengths[new] = length
        self._row_terms[new] = terms

    def add_counts(self, row: int, counts: dict[str, float]) -> None:
        """Index already analysed, weighted term counts under ``row``, replacing it."""
        self.remove(row)
        for term, tf in counts.items():
            self.postings.setdefault(term, {})[row] = tf
            self._arrays.pop(term, None)
        length = sum(counts.values())
        self.lengths[row] = length
        self._row_terms[row] = tuple(counts)
        self._total_len += length

    def remove(self, row: int) -> None:
        length = self.lengths.pop(row, None)
        if length is None:
            return
        self._total_len -= length
        for term in self._row_terms.pop(row, ()):
            self._arrays.pop(term, None)
            rows = self.postings.get(term)
            if rows is not None:
                rows.pop(row, None)
                if not rows:
                    del self.postings[term]

    def idf(self, term: str) -> float:
        n = len(self.lengths)
        df = len(self.postings.get(term, ()))
        return math.log(1.0 + (n - df + 0.5) / (df + 0.5))

    def _posting(self, term: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """A term's postings as (rows, term frequencies, row lengths), rows ascending."""
        cached = self._arrays.get(term)
        if cached is not None:
            return cached
        postings = self.postings.get(term)
        if not postings:
            return None
        n = len(postings)
        rows = np.fromiter(postings.keys(), dtype=np.int64, count=n)
        tfs = np.fromiter(postings.values(), dtype=np.float64, count=n)
        lengths = self.lengths
        lens = np.fromiter((lengths[r] for r in postings), dtype=np.float64, count=n)
        order = np.argsort(rows, kind="stable")
        cached = (rows[order], tfs[order], lens[order])
        self._arrays[term] = cached
        return cached

    def score_arrays(
        self, query: str, *, candidates: np.ndarray | None = None, common_df: int = 2000
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows ascending, normalised BM25 in [0, 1], IDF-weighted share of query terms
        present) for every row the query's terms reach.

        Rare terms are scored over their whole posting list; a term in more than
        ``common_df`` rows (low IDF, little evidence) only adds to rows already found by the
        rarer terms or given as ``candidates``, which bounds what a query reaches on large
        indexes. A term present only in a light field (weight below 1) counts that fraction
        towards coverage.
        """
        empty = np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0)
        terms = list(dict.fromkeys(tokenize(bounded_query(query))))
        if not terms or not self.lengths:
            return empty
        avg = self._total_len / len(self.lengths) or 1.0
        idfs = {t: self.idf(t) for t in terms}
        total_idf = sum(idfs.values()) or 1.0
        base, slope = K1 * (1.0 - B), K1 * B / avg
        parts: list[tuple[float, np.ndarray, np.ndarray, np.ndarray]] = []
        common: list[tuple[float, np.ndarray, np.ndarray, np.ndarray]] = []
        for term in terms:
            posting = self._posting(term)
            if posting is None:
                continue
            entry = (idfs[term] / total_idf, *posting)
            (common if posting[0].size > common_df else parts).append(entry)
        if common:
            found = [p[1] for p in parts]
            if candidates is not None and candidates.size:
                found.append(np.asarray(candidates, dtype=np.int64))
            only = np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)
            for w, rows, tfs, lens in common:
                keep = np.isin(rows, only, assume_unique=True)
                parts.append((w, rows[keep], tfs[keep], lens[keep]))
        parts = [p for p in parts if p[1].size]
        if not parts:
            return empty
        all_rows = np.concatenate([p[1] for p in parts])
        bm25_parts = [w * tfs / (tfs + base + slope * lens) for w, _, tfs, lens in parts]
        cover_parts = [w * np.minimum(tfs, 1.0) for w, _, tfs, _ in parts]
        rows, where = np.unique(all_rows, return_inverse=True)
        bm25 = np.bincount(where, weights=np.concatenate(bm25_parts), minlength=rows.size)
        cover = np.bincount(where, weights=np.concatenate(cover_parts), minlength=rows.size)
        return rows, bm25, cover

    def score(
        self, query: str, *, candidates: set[int] | None = None, common_df: int = 2000
    ) -> tuple[dict[int, float], dict[int, float]]:
        """Per row: (normalised BM25 in [0, 1], IDF-weighted share of query terms present);
        ``score_arrays`` as dicts."""
        wanted = (
            np.fromiter(candidates, dtype=np.int64, count=len(candidates)) if candidates else None
        )
        rows, bm25, cover = self.score_arrays(query, candidates=wanted, common_df=common_df)
        keys = rows.tolist()
        return dict(zip(keys, bm25.tolist(), strict=True)), dict(
            zip(keys, cover.tolist(), strict=True)
        )
