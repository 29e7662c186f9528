"""Dense vectors of one tenant and one kind: a numpy matrix, plus an ANN graph when large.

Why this shape (measured on the 2-core box, see bench/bench_retrieval.py): a numpy brute-force
scan is exact and costs ~1.5 ms at 10k x 384 floats but ~16 ms at 100k, over the 5 ms target;
hnswlib's HNSW answers in ~0.4 ms at 100k (usearch: ~1 ms, and a 2x slower build: 108 s vs 49 s
for 100k random vectors on a loaded box). So rows below ``ann_threshold`` are scanned exactly and
above it an HNSW graph (hnswlib, built in a background thread) proposes candidates that are then
re-scored exactly from the matrix. Rows appended after the last build are scanned
exactly until the next incremental extension, so a write is searchable at once.

Rows are never reused: an update writes a new row and kills the old one, so a stale graph entry
can only point at a dead row, which the alive mask filters out.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

ANN_EXTEND_EVERY = 4096


class VectorStore:
    """Append-only rows of unit vectors with an alive mask; exact or ANN top-k by cosine."""

    def __init__(self, dim: int, *, ann_threshold: int = 20_000, capacity: int = 1024) -> None:
        self.dim = dim
        self.ann_threshold = ann_threshold
        self.matrix = np.zeros((capacity, dim), dtype=np.float32)
        self.alive = np.zeros(capacity, dtype=bool)
        self.count = 0  # live rows
        self._ann: Any = None
        self._ann_upto = 0  # rows [0, _ann_upto) are in the graph
        self._ann_lock = threading.Lock()
        self._building = False

    # --- writes ---------------------------------------------------------------------------
    def _grow(self, rows: int) -> None:
        cap = self.matrix.shape[0]
        if rows <= cap:
            return
        new_cap = max(rows, cap * 2)
        matrix = np.zeros((new_cap, self.dim), dtype=np.float32)
        matrix[:cap] = self.matrix
        alive = np.zeros(new_cap, dtype=bool)
        alive[:cap] = self.alive
        self.matrix, self.alive = matrix, alive

    def put(self, row: int, vector: np.ndarray) -> None:
        """Store ``vector`` at ``row`` (a fresh row from the caller)."""
        self._grow(row + 1)
        self.matrix[row] = vector
        if not self.alive[row]:
            self.count += 1
        self.alive[row] = True

    def kill(self, row: int) -> None:
        if row < self.alive.shape[0] and self.alive[row]:
            self.alive[row] = False
            self.count -= 1

    # --- ANN maintenance --------------------------------------------------------------------
    def needs_ann_work(self, upto: int) -> bool:
        if self._building or self.count < self.ann_threshold:
            return False
        return self._ann is None or upto - self._ann_upto >= ANN_EXTEND_EVERY

    def build_ann(self, upto: int, *, threads: int = 1) -> None:
        """Create or extend the graph with rows [_ann_upto, upto); blocking: run in a thread.

        One thread by default, so a large build leaves the other core to the event loop.
        """
        import hnswlib

        self._building = True
        try:
            start = self._ann_upto if self._ann is not None else 0
            keys = np.arange(start, upto, dtype=np.int64)
            live = self.alive[start:upto].copy()
            vectors = self.matrix[start:upto][live]
            with self._ann_lock:
                if self._ann is None:
                    self._ann = hnswlib.Index(space="ip", dim=self.dim)
                    self._ann.init_index(max_elements=max(2 * upto, 1024), M=16, ef_construction=64)
                    self._ann.set_ef(64)
                index = self._ann
                need = index.get_current_count() + int(live.sum())
                if need > index.get_max_elements():
                    index.resize_index(2 * need)
                if vectors.shape[0]:
                    index.add_items(vectors, keys[live], num_threads=threads)
                self._ann_upto = upto
            log.info("ANN graph covers %d rows", upto)
        finally:
            self._building = False

    # --- reads --------------------------------------------------------------------------------
    def search(
        self, query: np.ndarray, k: int, upto: int, allowed: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """Top ``k`` (row, cosine) among live rows [0, upto), optionally only ``allowed`` rows."""
        if self.count == 0 or k <= 0:
            return []
        upto = min(upto, self.alive.shape[0])
        mask = self.alive[:upto] if allowed is None else (self.alive[:upto] & allowed[:upto])
        use_ann = (
            self._ann is not None
            and (allowed is None or int(mask.sum()) > self.ann_threshold)
            and self._ann_lock.acquire(blocking=False)
        )
        if not use_ann:
            rows = np.flatnonzero(mask)
            if rows.size == 0:
                return []
            if rows.size * 4 < upto:  # a small filtered subset: gather only those rows
                return _top(rows, self.matrix[rows] @ query, k)
            # scan the contiguous block (a view, no copy), then keep the live rows
            return _top(rows, (self.matrix[:upto] @ query)[rows], k)
        try:
            assert self._ann is not None
            want = min(max(4 * k, 32), self._ann.get_current_count())
            labels, _ = self._ann.knn_query(query, k=want, num_threads=1)
            tail_from = self._ann_upto
        finally:
            self._ann_lock.release()
        graph_rows = np.asarray(labels[0], dtype=np.int64)
        graph_rows = graph_rows[graph_rows < upto]
        graph_rows = graph_rows[mask[graph_rows]]
        tail = np.flatnonzero(mask[tail_from:]) + tail_from
        rows = np.concatenate([graph_rows, tail]).astype(np.int64)
        if rows.size == 0:
            return []
        return _top(rows, self.matrix[rows] @ query, k)


def _top(rows: np.ndarray, scores: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The k best (row, score) pairs, best first."""
    part = np.argpartition(-scores, k - 1)[:k] if rows.size > k else np.arange(rows.size)
    order = part[np.argsort(-scores[part])]
    return [(int(rows[i]), float(scores[i])) for i in order]
