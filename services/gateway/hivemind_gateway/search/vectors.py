"""Dense vectors of one tenant and one kind: a numpy matrix, plus an ANN graph when large.

Why this shape (measured on the 2-core box, see bench/bench_retrieval.py): a numpy brute-force
scan is exact and costs ~1.5 ms at 10k x 384 floats but ~16 ms at 100k, over the 5 ms target;
hnswlib's HNSW answers in ~0.4 ms at 100k (usearch: ~1 ms, and a 2x slower build: 108 s vs 49 s
for 100k random vectors on a loaded box). So rows below ``ann_threshold`` are scanned exactly and
above it an HNSW graph (hnswlib, built in a background thread) proposes candidates that are then
re-scored exactly from the matrix. Rows appended after the last build are scanned
exactly until the next incremental extension, so a write is searchable at once.

Rows are never reused: an update writes a new row and kills the old one, so a stale graph entry
can only point at a dead row, which is filtered out. Rows are ids, not positions: vectors sit
densely in slots (in row order), and when at least half the slots are dead (and there are at least
``compact_min`` of them) the live ones are moved together, so a tenant that updates its facts
all day holds memory for its live facts, not for every version it ever wrote. The row-to-slot
map costs 8 bytes per row ever written; a vector costs 1.5 KB. A graph that has come to hold
more dead rows than live ones is dropped and rebuilt in the background (exact scans meanwhile).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

ANN_EXTEND_EVERY = 4096
COMPACT_MIN = 4096


class VectorStore:
    """Unit vectors keyed by row (rows only grow), with exact or ANN top-k by cosine."""

    def __init__(
        self,
        dim: int,
        *,
        ann_threshold: int = 20_000,
        capacity: int = 1024,
        compact_min: int = COMPACT_MIN,
    ) -> None:
        self.dim = dim
        self.ann_threshold = ann_threshold
        self.compact_min = compact_min
        self.matrix = np.zeros((capacity, dim), dtype=np.float32)  # by slot
        self.alive = np.zeros(capacity, dtype=bool)  # by slot
        self.row_of = np.full(capacity, -1, dtype=np.int64)  # slot -> row, increasing
        self.slot_of = np.full(capacity, -1, dtype=np.int64)  # row -> slot, -1 when none
        self.slots = 0  # slots in use, live or dead
        self.count = 0  # live rows
        self.compactions = 0
        self._ann: Any = None
        self._ann_upto = 0  # rows [0, _ann_upto) are in the graph
        self._ann_dead = 0  # rows in the graph killed since
        self._ann_lock = threading.Lock()
        self._arrays_lock = threading.Lock()  # a compaction vs a build's snapshot
        self._building = False

    # --- writes ---------------------------------------------------------------------------
    def _grow_slots(self, slots: int) -> None:
        cap = self.matrix.shape[0]
        if slots <= cap:
            return
        new_cap = max(slots, cap * 2)
        matrix = np.zeros((new_cap, self.dim), dtype=np.float32)
        matrix[:cap] = self.matrix
        alive = np.zeros(new_cap, dtype=bool)
        alive[:cap] = self.alive
        row_of = np.full(new_cap, -1, dtype=np.int64)
        row_of[:cap] = self.row_of
        with self._arrays_lock:
            self.matrix, self.alive, self.row_of = matrix, alive, row_of

    def _grow_rows(self, rows: int) -> None:
        cap = self.slot_of.shape[0]
        if rows > cap:
            slot_of = np.full(max(rows, cap * 2), -1, dtype=np.int64)
            slot_of[:cap] = self.slot_of
            self.slot_of = slot_of

    def _slot(self, row: int) -> int:
        return int(self.slot_of[row]) if 0 <= row < self.slot_of.shape[0] else -1

    def put(self, row: int, vector: np.ndarray) -> None:
        """Store ``vector`` at ``row`` (a fresh row from the caller, above every earlier one)."""
        slot = self._slot(row)
        if slot < 0:
            if self.slots and row < self.row_of[self.slots - 1]:
                raise ValueError(f"row {row} is below the last row stored; rows only grow")
            self._grow_rows(row + 1)
            self._grow_slots(self.slots + 1)
            slot = self.slots
            self.slots += 1
            self.row_of[slot] = row
            self.slot_of[row] = slot
        self.matrix[slot] = vector
        if not self.alive[slot]:
            self.count += 1
        self.alive[slot] = True

    def kill(self, row: int) -> None:
        slot = self._slot(row)
        if slot < 0 or not self.alive[slot]:
            return
        self.alive[slot] = False
        self.slot_of[row] = -1
        self.count -= 1
        if self._ann is not None and row < self._ann_upto:
            self._ann_dead += 1
        self._maybe_compact()

    def vector(self, row: int) -> np.ndarray | None:
        """The live vector of ``row``, or None."""
        slot = self._slot(row)
        return self.matrix[slot] if slot >= 0 and self.alive[slot] else None

    def _maybe_compact(self) -> None:
        if self._building:
            return  # a build is reading the arrays; the next kill tries again
        dead = self.slots - self.count
        if dead >= self.compact_min and dead >= self.count:
            self.compact()
        if self._ann is not None and self._ann_dead > max(self.count, self.compact_min):
            log.info("ANN graph holds %d dead rows; rebuilding it", self._ann_dead)
            self._ann, self._ann_upto, self._ann_dead = None, 0, 0

    def compact(self) -> None:
        """Move the live vectors together, in row order; rows keep their ids."""
        live = np.flatnonzero(self.alive[: self.slots])
        n = int(live.size)
        cap = max(1024, 2 * n)
        matrix = np.zeros((cap, self.dim), dtype=np.float32)
        matrix[:n] = self.matrix[live]
        row_of = np.full(cap, -1, dtype=np.int64)
        row_of[:n] = self.row_of[live]
        alive = np.zeros(cap, dtype=bool)
        alive[:n] = True
        slot_of = np.full(self.slot_of.shape[0], -1, dtype=np.int64)
        slot_of[row_of[:n]] = np.arange(n)
        with self._arrays_lock:
            self.matrix, self.alive, self.row_of, self.slot_of = matrix, alive, row_of, slot_of
            self.slots = n
        self.compactions += 1

    # --- ANN maintenance --------------------------------------------------------------------
    def needs_ann_work(self, upto: int) -> bool:
        if self._building or self.count < self.ann_threshold:
            return False
        return self._ann is None or upto - self._ann_upto >= ANN_EXTEND_EVERY

    def _slots_below(self, row: int) -> int:
        """How many used slots hold rows below ``row`` (rows increase with slots)."""
        return int(np.searchsorted(self.row_of[: self.slots], row))

    def build_ann(self, upto: int, *, threads: int = 1) -> None:
        """Create or extend the graph with rows [_ann_upto, upto); blocking: run in a thread.

        One thread by default, so a large build leaves the other core to the event loop.
        """
        import hnswlib

        self._building = True
        try:
            start = self._ann_upto if self._ann is not None else 0
            with self._arrays_lock:  # a consistent snapshot of the rows to add
                lo, hi = self._slots_below(start), self._slots_below(upto)
                picked = lo + np.flatnonzero(self.alive[lo:hi])
                vectors = self.matrix[picked]
                keys = self.row_of[picked]
            with self._ann_lock:
                if self._ann is None:
                    self._ann = hnswlib.Index(space="ip", dim=self.dim)
                    self._ann.init_index(
                        max_elements=max(2 * int(keys.size), 1024), M=16, ef_construction=64
                    )
                    self._ann.set_ef(64)
                    self._ann_dead = 0
                index = self._ann
                need = index.get_current_count() + int(keys.size)
                if need > index.get_max_elements():
                    index.resize_index(2 * need)
                if keys.size:
                    index.add_items(vectors, keys, num_threads=threads)
                self._ann_upto = upto
            log.info("ANN graph covers %d rows", upto)
        finally:
            self._building = False

    # --- reads --------------------------------------------------------------------------------
    def search(
        self, query: np.ndarray, k: int, upto: int, allowed: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """Top ``k`` (row, cosine) among live rows [0, upto), optionally only ``allowed`` rows
        (a mask indexed by row)."""
        if self.count == 0 or k <= 0:
            return []
        n = self._slots_below(upto)
        mask = self.alive[:n]
        if allowed is not None:
            rows = self.row_of[:n]
            inside = rows < allowed.shape[0]
            by_slot = np.zeros(n, dtype=bool)
            by_slot[inside] = allowed[rows[inside]]
            mask = mask & by_slot
        use_ann = (
            self._ann is not None
            and (allowed is None or int(mask.sum()) > self.ann_threshold)
            and self._ann_lock.acquire(blocking=False)
        )
        if not use_ann:
            slots = np.flatnonzero(mask)
            if slots.size == 0:
                return []
            if slots.size * 4 < n:  # a small filtered subset: gather only those rows
                return _top(self.row_of[slots], self.matrix[slots] @ query, k)
            # scan the contiguous block (a view, no copy), then keep the live slots
            return _top(self.row_of[slots], (self.matrix[:n] @ query)[slots], k)
        try:
            assert self._ann is not None
            want = min(max(4 * k, 32), self._ann.get_current_count())
            labels, _ = self._ann.knn_query(query, k=want, num_threads=1)
            tail_from = self._slots_below(self._ann_upto)
        finally:
            self._ann_lock.release()
        graph_rows = np.asarray(labels[0], dtype=np.int64)
        graph_rows = graph_rows[graph_rows < self.slot_of.shape[0]]
        graph_slots = self.slot_of[graph_rows]
        graph_slots = graph_slots[(graph_slots >= 0) & (graph_slots < n)]
        graph_slots = graph_slots[mask[graph_slots]]
        tail = np.flatnonzero(mask[tail_from:]) + tail_from
        slots = np.concatenate([graph_slots, tail]).astype(np.int64)
        if slots.size == 0:
            return []
        return _top(self.row_of[slots], self.matrix[slots] @ query, k)


def _top(rows: np.ndarray, scores: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The k best (row, score) pairs, best first."""
    part = np.argpartition(-scores, k - 1)[:k] if rows.size > k else np.arange(rows.size)
    order = part[np.argsort(-scores[part])]
    return [(int(rows[i]), float(scores[i])) for i in order]
