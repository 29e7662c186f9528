"""One tenant's searchable items: facts and memories, each with dense and lexical indexes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hivemind_gateway.search.lexical import LexicalIndex
from hivemind_gateway.search.vectors import VectorStore

KINDS = ("fact", "memory")
PINNED_TAG = "pinned"


@dataclass
class Item:
    """What the index knows of one fact or memory."""

    kind: str
    id: str
    text: str  # what is searched and what is injected: "key: value" for facts
    tags: tuple[str, ...] = ()
    session_id: str | None = None
    version: str = ""
    row: int = -1
    has_vector: bool = False


@dataclass
class Hit:
    item: Item
    dense: float | None  # cosine, None when the item (or the query) has no vector
    lexical: float  # normalised BM25 in [0, 1]
    coverage: float  # IDF share of the query's terms the item contains


@dataclass
class KindIndex:
    """Items of one kind: rows shared by the vector store and the lexical index."""

    ann_threshold: int = 20_000
    items: dict[str, Item] = field(default_factory=dict)
    by_row: dict[int, Item] = field(default_factory=dict)
    next_row: int = 0
    vectors: VectorStore | None = None
    lexical: LexicalIndex = field(default_factory=LexicalIndex)
    pinned: set[str] = field(default_factory=set)

    def __len__(self) -> int:
        return len(self.items)

    def upsert(self, item: Item, vector: np.ndarray | None) -> None:
        """Add or replace an item; a replaced item gets a fresh row."""
        self.remove(item.id)
        item.row = self.next_row
        self.next_row += 1
        item.has_vector = vector is not None
        if vector is not None:
            if self.vectors is None or self.vectors.dim != vector.shape[0]:
                self.vectors = VectorStore(vector.shape[0], ann_threshold=self.ann_threshold)
                for other in self.items.values():
                    other.has_vector = False
            self.vectors.put(item.row, vector)
        self.items[item.id] = item
        self.by_row[item.row] = item
        if PINNED_TAG in item.tags:
            self.pinned.add(item.id)
        self.lexical.add(item.row, item.text)

    def set_vector(self, item_id: str, vector: np.ndarray) -> None:
        """Give an item (loaded without one) its vector."""
        item = self.items.get(item_id)
        if item is not None:
            self.upsert(item, vector)

    def remove(self, item_id: str) -> Item | None:
        item = self.items.pop(item_id, None)
        if item is None:
            return None
        self.by_row.pop(item.row, None)
        self.pinned.discard(item_id)
        self.lexical.remove(item.row)
        if self.vectors is not None:
            self.vectors.kill(item.row)
        return item

    def drop_vectors(self) -> None:
        """Forget every vector (the embedding model changed)."""
        self.vectors = None
        for item in self.items.values():
            item.has_vector = False

    def missing_vectors(self, limit: int) -> list[Item]:
        out = []
        for item in self.items.values():
            if not item.has_vector:
                out.append(item)
                if len(out) >= limit:
                    break
        return out

    def _allowed(self, session_id: str | None, tags: tuple[str, ...]) -> np.ndarray | None:
        if session_id is None and not tags:
            return None
        mask = np.zeros(self.next_row, dtype=bool)
        need = set(tags)
        for item in self.items.values():
            if session_id is not None and item.session_id != session_id:
                continue
            if need and not need.issubset(item.tags):
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
    ) -> list[Hit]:
        """Candidates from both indexes with their dense and lexical scores (unordered)."""
        if not self.items:
            return []
        allowed = self._allowed(session_id, tags)
        dense: dict[int, float] = {}
        vectors = self.vectors
        if query_vec is not None and vectors is not None and vectors.dim == query_vec.shape[0]:
            for row, score in vectors.search(query_vec, max(k, 50), self.next_row, allowed):
                dense[row] = score
        bm25, cover = self.lexical.score(query_text, candidates=set(dense))
        lexical_rows = sorted(bm25, key=bm25.__getitem__, reverse=True)[: max(k, 50)]
        hits: list[Hit] = []
        for row in dict.fromkeys([*dense, *lexical_rows]):
            item = self.by_row.get(row)
            if item is None or (allowed is not None and not allowed[row]):
                continue
            d = dense.get(row)
            if d is None and query_vec is not None and item.has_vector and vectors is not None:
                vec = vectors.vector(row)
                d = float(vec @ query_vec) if vec is not None else None
            hits.append(Hit(item, d, bm25.get(row, 0.0), cover.get(row, 0.0)))
        return hits


@dataclass
class TenantIndex:
    """Facts and memories of one tenant, in the vector space of one embedding model."""

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
