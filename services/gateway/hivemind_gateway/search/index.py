"""One tenant's searchable items: facts, memories and document chunks, each kind with dense and
lexical indexes."""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from hivemind_gateway.search.lexical import LexicalIndex, tokenize
from hivemind_gateway.search.vectors import VectorStore

KINDS = ("fact", "memory", "doc")
PINNED_TAG = "pinned"
EMBED_CHARS = 4000  # the encoder truncates long inputs anyway; never exceed its request limit

# Field weights of the lexical index (chosen on the LoCoMo development split, docs/retrieval.md):
# a fact's key counts twice (it is in "key: value" once more); a memory's speaker and tags
# count as its own words (a fact's tags are not searched); each neighbouring turn of the same
# session counts half.
KEY_WEIGHT = 1.0
SPEAKER_WEIGHT = 1.0
TAGS_WEIGHT = 1.0
NEIGHBOUR_WEIGHT = 0.5

_TIME_TEXT = """
    yesterday today tonight tomorrow ago last next weekend week month year recently soon
    earlier later monday tuesday wednesday thursday friday saturday sunday january february
    march april may june july august september october november december
"""
_TIME_WORDS = frozenset(_TIME_TEXT.split())
_LOWER_WORD = re.compile(r"[a-z0-9]+")


def mentions_time(text: str) -> bool:
    """Whether ``text`` says when something happened (an English time word or a year)."""
    found = set(_LOWER_WORD.findall(text.lower()))
    if found & _TIME_WORDS:
        return True
    return any(len(w) == 4 and w[:2] in ("19", "20") and w.isdigit() for w in found)


def embed_header(source: str, heading: str, context: str = "") -> str:
    """The line embedded before a document chunk: its source, heading and the document's
    one-line summary (a module docstring's first line), so a definition carries its topic."""
    head = f"{source}: {heading}" if heading else source
    return (f"{head} ({context})" if context else head)[:300]


@dataclass(frozen=True)
class DocRef:
    """Where a document chunk comes from (the reference library, ``hivemind_gateway.docs``)."""

    doc_id: str
    collection: str
    source: str
    start_line: int
    end_line: int
    heading: str = ""
    context: str = ""  # the document's one-line summary

    def header(self) -> str:
        """The line embedded before the chunk's text."""
        return embed_header(self.source, self.heading, self.context)


@dataclass
class Item:
    """What the index knows of one fact, memory or document chunk."""

    kind: str
    id: str
    text: str  # what is searched and what is injected: "key: value" for facts
    tags: tuple[str, ...] = ()
    session_id: str | None = None
    version: str = ""
    row: int = -1
    has_vector: bool = False
    key: str = ""  # a fact's key (weighted above its value)
    speaker: str = ""  # who said a memory (metadata.speaker)
    when: float | None = None  # the time a memory describes (metadata.date / occurred_at)
    temporal: bool = False  # its text says when something happened ("last week", "in May")
    doc: DocRef | None = None  # a document chunk's source, lines and heading
    _tokens: tuple[str, ...] | None = field(default=None, repr=False, compare=False)

    def tokens(self) -> tuple[str, ...]:
        """Its text, analysed once (neighbours reuse it when they are re-indexed)."""
        if self._tokens is None:
            self._tokens = tuple(tokenize(self.text))
        return self._tokens

    def embed_input(self) -> str:
        """What is embedded: a memory with a speaker is embedded as said by them."""
        if self.doc is not None:
            return embed_text(f"{self.doc.header()}\n{self.text}")
        return embed_text(f"{self.speaker}: {self.text}" if self.speaker else self.text)


def embed_text(text: str) -> str:
    """What is embedded of ``text``: runs of whitespace as one space (the encoder's tokenizer
    splits on whitespace, so the vector is the same), and only then cut: a text that opened
    with 4,000 spaces was cut to nothing, which the embedding service refuses."""
    return " ".join(text.split())[:EMBED_CHARS]


def doc_filter(
    collections: Iterable[str] | None = None,
    skip: Iterable[str] | None = None,
    path_prefix: str | None = None,
) -> Callable[[Item], bool] | None:
    """A ``where`` for document chunks: of these collections, not of those, under a path."""
    use, avoid = set(collections or ()), set(skip or ())
    if not use and not avoid and not path_prefix:
        return None

    def keep(item: Item) -> bool:
        ref = item.doc
        if ref is None or (use and ref.collection not in use) or ref.collection in avoid:
            return False
        return not path_prefix or ref.source.startswith(path_prefix)

    return keep


@dataclass
class Hit:
    item: Item
    dense: float | None  # cosine, None when the item (or the query) has no vector
    lexical: float  # normalised BM25 in [0, 1]
    coverage: float  # IDF share of the query's terms the item contains


@dataclass
class KindIndex:
    """Items of one kind: rows shared by the vector store and the lexical index.

    Memories of a session are kept in order (by creation stamp), so that each one's lexical
    entry can carry its neighbouring turns. Items without a vector wait in ``pending`` (in
    arrival order) for the search index's worker.
    """

    ann_threshold: int = 20_000
    items: dict[str, Item] = field(default_factory=dict)
    by_row: dict[int, Item] = field(default_factory=dict)
    next_row: int = 0
    vectors: VectorStore | None = None
    lexical: LexicalIndex = field(default_factory=LexicalIndex)
    # each document's chunk vectors, summed (float64) and counted: their mean is the document's
    # topic, which ranks a chunk beside its own vector (``doc_vector``)
    doc_sums: dict[str, np.ndarray] = field(default_factory=dict)
    doc_counts: dict[str, int] = field(default_factory=dict)
    pinned: set[str] = field(default_factory=set)
    pending: dict[str, None] = field(default_factory=dict)
    sessions: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # (version, id)

    def __len__(self) -> int:
        return len(self.items)

    def upsert(self, item: Item, vector: np.ndarray | None) -> None:
        """Add or replace an item; a replaced item gets a fresh row."""
        old = self.items.get(item.id)
        self.remove(
            item.id, reindex_neighbours=old is not None and old.session_id != item.session_id
        )
        item.row = self.next_row
        self.next_row += 1
        item.has_vector = vector is not None
        if vector is not None:
            if self.vectors is None or self.vectors.dim != vector.shape[0]:
                self.vectors = VectorStore(vector.shape[0], ann_threshold=self.ann_threshold)
                self.doc_sums, self.doc_counts = {}, {}
                for other in self.items.values():
                    other.has_vector = False
                    self.pending[other.id] = None
            self.vectors.put(item.row, vector)
            self._count_doc_vector(item, vector, 1)
            self.pending.pop(item.id, None)
        else:
            self.pending[item.id] = None
        self.items[item.id] = item
        self.by_row[item.row] = item
        if PINNED_TAG in item.tags:
            self.pinned.add(item.id)
        for other in self._place(item):
            self._index_lexical(other)

    def set_vector(self, item_id: str, vector: np.ndarray) -> None:
        """Give an item (loaded without one) its vector: a fresh row (vector rows only grow),
        its lexical entry moved there as it is."""
        item = self.items.get(item_id)
        if item is None:
            return
        if self.vectors is None or self.vectors.dim != vector.shape[0]:
            self.upsert(item, vector)
            return
        old, new = item.row, self.next_row
        self.next_row += 1
        if item.has_vector:
            self._count_doc_vector(item, self.vectors.vector(old), -1)
        self._count_doc_vector(item, vector, 1)
        self.vectors.kill(old)
        self.vectors.put(new, vector)
        self.lexical.move(old, new)
        del self.by_row[old]
        self.by_row[new] = item
        item.row, item.has_vector = new, True
        self.pending.pop(item_id, None)

    def remove(self, item_id: str, *, reindex_neighbours: bool = True) -> Item | None:
        item = self.items.pop(item_id, None)
        if item is None:
            return None
        self.by_row.pop(item.row, None)
        self.pinned.discard(item_id)
        self.pending.pop(item_id, None)
        self.lexical.remove(item.row)
        if self.vectors is not None:
            if item.has_vector:
                self._count_doc_vector(item, self.vectors.vector(item.row), -1)
            self.vectors.kill(item.row)
        neighbours = self._unplace(item)
        if reindex_neighbours:
            for other in neighbours:
                self._index_lexical(other)
        return item

    # --- documents' vectors ---------------------------------------------------------------------
    def _count_doc_vector(self, item: Item, vector: np.ndarray | None, sign: int) -> None:
        """Add (``sign`` 1) or take away (-1) a chunk's vector in its document's sum."""
        if item.doc is None or vector is None:
            return
        did = item.doc.doc_id
        count = self.doc_counts.get(did, 0) + sign
        if count <= 0:
            self.doc_sums.pop(did, None)
            self.doc_counts.pop(did, None)
            return
        held = self.doc_sums.get(did)
        if held is None:
            held = np.zeros(vector.shape[0], dtype=np.float64)
        self.doc_sums[did] = held + sign * vector.astype(np.float64)
        self.doc_counts[did] = count

    def doc_vector(self, doc_id: str) -> np.ndarray | None:
        """The unit mean of a document's chunk vectors (its topic), or None without any."""
        held = self.doc_sums.get(doc_id)
        if held is None:
            return None
        norm = float(np.linalg.norm(held))
        return held / norm if norm > 1e-12 else None

    # --- sessions and the lexical fields -------------------------------------------------------
    def _place(self, item: Item) -> list[Item]:
        """Put a memory in its session's order; the items whose lexical entry must change."""
        if item.session_id is None:
            return [item]
        order = self.sessions.setdefault(item.session_id, [])
        at = bisect.bisect_left(order, (item.version, item.id))
        order.insert(at, (item.version, item.id))
        return [item, *self._around(order, at)]

    def _unplace(self, item: Item) -> list[Item]:
        if item.session_id is None or item.session_id not in self.sessions:
            return []
        order = self.sessions[item.session_id]
        at = bisect.bisect_left(order, (item.version, item.id))
        if at < len(order) and order[at] == (item.version, item.id):
            del order[at]
        if not order:
            del self.sessions[item.session_id]
            return []
        return self._around(order, at, removed=True)

    def _around(self, order: list[tuple[str, str]], at: int, removed: bool = False) -> list[Item]:
        """The items just before and after position ``at`` of a session's order."""
        picks = (at - 1, at) if removed else (at - 1, at + 1)
        found = [self.items.get(order[i][1]) for i in picks if 0 <= i < len(order)]
        return [i for i in found if i is not None]

    def neighbours(self, item: Item) -> list[Item]:
        """The turns just before and after a memory in its session."""
        order = self.sessions.get(item.session_id or "")
        if not order:
            return []
        at = bisect.bisect_left(order, (item.version, item.id))
        return self._around(order, at)

    def _index_lexical(self, item: Item) -> None:
        counts: dict[str, float] = {}

        def count(terms: Iterable[str], weight: float) -> None:
            for term in terms:
                counts[term] = counts.get(term, 0.0) + weight

        count(item.tokens(), 1.0)
        if item.key:
            count(tokenize(item.key), KEY_WEIGHT)
        if item.speaker:
            count(tokenize(item.speaker), SPEAKER_WEIGHT)
        if item.tags and item.kind == "memory":
            count(tokenize(" ".join(item.tags)), TAGS_WEIGHT)
        if item.doc is not None:  # a chunk's path and heading count like a fact's key
            count(tokenize(f"{item.doc.source} {item.doc.heading}"), KEY_WEIGHT)
        for neighbour in self.neighbours(item):
            count(neighbour.tokens(), NEIGHBOUR_WEIGHT)
        self.lexical.add_counts(item.row, counts)

    def drop_vectors(self) -> None:
        """Forget every vector (the embedding model changed)."""
        self.vectors = None
        self.doc_sums, self.doc_counts = {}, {}
        for item in self.items.values():
            item.has_vector = False
            self.pending[item.id] = None

    def missing_vectors(self, limit: int) -> list[Item]:
        """Up to ``limit`` items without a vector, oldest wait first."""
        out = []
        for item_id in self.pending:
            item = self.items.get(item_id)
            if item is not None:
                out.append(item)
                if len(out) >= limit:
                    break
        return out

    def _allowed(
        self,
        session_id: str | None,
        tags: tuple[str, ...],
        where: Callable[[Item], bool] | None = None,
    ) -> np.ndarray | None:
        if session_id is None and not tags and where is None:
            return None
        mask = np.zeros(self.next_row, dtype=bool)
        need = set(tags)
        for item in self.items.values():
            if session_id is not None and item.session_id != session_id:
                continue
            if need and not need.issubset(item.tags):
                continue
            if where is not None and not where(item):
                continue
            mask[item.row] = True
        return mask

    def search(
        self,
        query_vec: np.ndarray | None,
        query_text: str,
        *,
        k: int,
        session_id: str | None = None,
        tags: tuple[str, ...] = (),
        where: Callable[[Item], bool] | None = None,
    ) -> list[Hit]:
        """Candidates from both indexes with their dense and lexical scores (unordered).

        ``where`` keeps only the items it accepts (a document collection, a path prefix)."""
        if not self.items:
            return []
        allowed = self._allowed(session_id, tags, where)
        want = max(k, 50)
        dense: dict[int, float] = {}
        vectors = self.vectors
        if query_vec is not None and vectors is not None and vectors.dim == query_vec.shape[0]:
            for row, score in vectors.search(query_vec, want, self.next_row, allowed):
                dense[row] = score
        dense_rows = np.fromiter(dense, dtype=np.int64, count=len(dense))
        rows, bm25, cover = self.lexical.score_arrays(query_text, candidates=dense_rows)
        if allowed is not None and rows.size:  # the lexical best among the allowed rows
            inside = rows < allowed.shape[0]
            inside[inside] = allowed[rows[inside]]
            rows, bm25, cover = rows[inside], bm25[inside], cover[inside]
        top = np.argpartition(-bm25, want - 1)[:want] if rows.size > want else np.arange(rows.size)
        top = top[np.lexsort((rows[top], -bm25[top]))]  # best first; ties: the lower row
        wanted = np.fromiter(dict.fromkeys([*dense, *rows[top].tolist()]), dtype=np.int64)
        lex = np.zeros(wanted.size)
        cov = np.zeros(wanted.size)
        if rows.size:  # rows are ascending: look the wanted ones up
            at = np.minimum(np.searchsorted(rows, wanted), rows.size - 1)
            found = rows[at] == wanted
            lex[found], cov[found] = bm25[at[found]], cover[at[found]]
        hits: list[Hit] = []
        for row, b, c in zip(wanted.tolist(), lex.tolist(), cov.tolist(), strict=True):
            item = self.by_row.get(row)
            if item is None or (allowed is not None and not allowed[row]):
                continue
            d = dense.get(row)
            if d is None and query_vec is not None and item.has_vector and vectors is not None:
                vec = vectors.vector(row)
                d = float(vec @ query_vec) if vec is not None else None
            hits.append(Hit(item, d, b, c))
        return hits


@dataclass
class TenantIndex:
    """Facts, memories and document chunks of one tenant, in one embedding model's space."""

    tenant: str
    ann_threshold: int = 20_000
    kinds: dict[str, KindIndex] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for kind in KINDS:
            self.kinds.setdefault(kind, KindIndex(ann_threshold=self.ann_threshold))

    def __getitem__(self, kind: str) -> KindIndex:
        return self.kinds[kind]

    def sizes(self) -> dict[str, int]:
        return {kind: len(ix) for kind, ix in self.kinds.items()}
