"""Word-level lexical scoring: a tokenizer and an incremental BM25 index over key and value.

Scores are normalised to [0, 1] by the query's total IDF, so a score says how much of the
query's (IDF-weighted) wording an item covers: the gate can read it as evidence, not just rank.
"""

from __future__ import annotations

import math
import re
from collections import Counter

_WORD = re.compile(r"[a-z0-9]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_COMPOUND = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)+")

_STOPWORD_TEXT = """
    a about above after again all also am an and any are as at be been being below between
    both but by can could did do does doing done for from further get got had has have
    having he her here hers him his how i if in into is it its itself just know let like me
    mine more most my myself need no nor not now of off on once only or other our ours out
    over own please same she should so some such tell than that the their theirs them then
    there these they this those through to too under until up us use used uses using very
    want was we were what when where which while who whom why will with would you your yours
    yourself
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())

K1 = 1.2
B = 0.75


def _undouble(word: str) -> str:
    doubled = len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeiousl"
    return word[:-1] if doubled else word


def _stem(word: str) -> str:
    """A tiny suffix stripper: enough that 'ports' meets 'port' and 'linter' meets 'linting'."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suffix in ("ing", "ed", "er"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix) and not word.endswith("eed"):
            return _undouble(word[: -len(suffix)])
    return word


def words(text: str) -> list[tuple[str, str]]:
    """(stem, word as written) for each non-stopword, for showing topics to people."""
    spaced = _CAMEL.sub(" ", text)
    return [(_stem(w), w) for w in _WORD.findall(spaced.lower()) if w not in STOPWORDS]


def tokenize(text: str) -> list[str]:
    """Lower-cased, stemmed words without stopwords; camelCase and snake_case are split, and a
    hyphenated word also counts joined ("Pi-hole" meets "pihole", "wi-fi" meets "wifi")."""
    spaced = _CAMEL.sub(" ", text).lower()
    out = [_stem(w) for w in _WORD.findall(spaced) if w not in STOPWORDS]
    out += [_stem(c.replace("-", "")) for c in _COMPOUND.findall(spaced)]
    return out


class LexicalIndex:
    """Incremental BM25 postings over rows; rows are ints owned by the caller."""

    def __init__(self) -> None:
        self.postings: dict[str, dict[int, int]] = {}
        self.lengths: dict[int, int] = {}
        self._row_terms: dict[int, tuple[str, ...]] = {}
        self._total_len = 0

    def __len__(self) -> int:
        return len(self.lengths)

    def add(self, row: int, text: str) -> None:
        """Index ``text`` under ``row`` (replacing what the row had)."""
        self.remove(row)
        counts = Counter(tokenize(text))
        for term, tf in counts.items():
            self.postings.setdefault(term, {})[row] = tf
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
            rows = self.postings.get(term)
            if rows is not None:
                rows.pop(row, None)
                if not rows:
                    del self.postings[term]

    def idf(self, term: str) -> float:
        n = len(self.lengths)
        df = len(self.postings.get(term, ()))
        return math.log(1.0 + (n - df + 0.5) / (df + 0.5))

    def score(
        self, query: str, *, candidates: set[int] | None = None, common_df: int = 2000
    ) -> tuple[dict[int, float], dict[int, float]]:
        """Per row: (normalised BM25 in [0, 1], IDF-weighted share of query terms present).

        Rare terms are scored over their whole posting list; a term in more than
        ``common_df`` rows (low IDF, little evidence) only adds to rows already found by the
        rarer terms or given as ``candidates``, which bounds the cost on large indexes.
        """
        terms = list(dict.fromkeys(tokenize(query)))
        if not terms or not self.lengths:
            return {}, {}
        avg = self._total_len / len(self.lengths) or 1.0
        idfs = {t: self.idf(t) for t in terms}
        total_idf = sum(idfs.values()) or 1.0
        bm25: dict[int, float] = {}
        cover: dict[int, float] = {}
        lengths = self.lengths

        def add(term: str, rows: dict[int, int], only: set[int] | None) -> None:
            w = idfs[term] / total_idf
            pairs = rows.items() if only is None else ((r, rows[r]) for r in only if r in rows)
            for row, tf in pairs:
                norm = K1 * (1.0 - B + B * lengths[row] / avg)
                bm25[row] = bm25.get(row, 0.0) + w * tf / (tf + norm)
                cover[row] = cover.get(row, 0.0) + w

        common: list[tuple[str, dict[int, int]]] = []
        for term in terms:
            rows = self.postings.get(term)
            if not rows:
                continue
            if len(rows) > common_df:
                common.append((term, rows))
            else:
                add(term, rows, None)
        if common:
            only = set(bm25) | (candidates or set())
            for term, rows in common:
                add(term, rows, only)
        return bm25, cover
