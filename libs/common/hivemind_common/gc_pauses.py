"""Garbage-collector pauses: measured on every collection, and made shorter after start-up.

A service process builds its clients, routes, models and indexes once; every later full
collection would walk all of them again. :func:`freeze_after_start` (called when the lifespan has
finished start-up) collects once and moves what survives into the permanent generation, so later
collections only walk what requests allocate. :func:`watch_gc_pauses` times each collection with
``gc.callbacks`` into ``hivemind_gc_pause_seconds`` (wall clock: what a request waiting on the
process sees, preemption by the OS included) and ``hivemind_gc_pause_cpu_seconds`` (the
collector's own CPU time, which a busy machine does not inflate), and keeps the longest pause,
which is logged when the process stops.
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Histogram

log = logging.getLogger(__name__)

GC_PAUSES = Histogram(
    "hivemind_gc_pause_seconds",
    "Time the garbage collector stopped the process, by generation.",
    ["generation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25),
)
GC_PAUSES_CPU = Histogram(
    "hivemind_gc_pause_cpu_seconds",
    "CPU time of each garbage collection (the process' own work, without preemption).",
    ["generation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25),
)


@dataclass
class PauseWatch:
    """Collections seen and the longest pause of each generation (seconds)."""

    collections: int = 0
    longest: dict[int, float] = field(default_factory=dict)
    longest_cpu_s: float = 0.0
    _started: float = 0.0
    _started_cpu: float = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            self._started_cpu = time.thread_time()
            return
        pause = time.perf_counter() - self._started
        cpu = time.thread_time() - self._started_cpu
        generation = int(info.get("generation", 0))
        self.collections += 1
        if pause > self.longest.get(generation, 0.0):
            self.longest[generation] = pause
        self.longest_cpu_s = max(self.longest_cpu_s, cpu)
        GC_PAUSES.labels(str(generation)).observe(pause)
        GC_PAUSES_CPU.labels(str(generation)).observe(cpu)

    @property
    def longest_s(self) -> float:
        return max(self.longest.values(), default=0.0)

    def summary(self) -> str:
        by_gen = ", ".join(f"gen{g} {s * 1000:.1f} ms" for g, s in sorted(self.longest.items()))
        longest = self.longest_s * 1000
        return (
            f"{self.collections} collections, longest pause {longest:.1f} ms ({by_gen}), "
            f"longest CPU time {self.longest_cpu_s * 1000:.1f} ms"
        )


_watch: PauseWatch | None = None


def watch_gc_pauses() -> PauseWatch:
    """Time every collection of this process from now on (once per process)."""
    global _watch
    if _watch is None:
        _watch = PauseWatch()
        gc.callbacks.append(_watch)
    return _watch


def freeze_after_start() -> None:
    """Collect once, then keep everything alive now out of later collections."""
    gc.collect()
    gc.freeze()
    log.debug("gc: %d objects frozen after start-up", gc.get_freeze_count())


def freeze_loaded() -> None:
    """After a large structure was built later than start-up (a tenant's search index loads on
    first use): freeze again, so full collections stop walking it. Only in a served process
    (:func:`watch_gc_pauses` was called); a test process holding many apps never freezes."""
    if _watch is not None:
        freeze_after_start()


def log_gc_pauses() -> None:
    """One line with the longest pauses seen (a service logs it when it stops)."""
    if _watch is not None and _watch.collections:
        log.info("gc: %s", _watch.summary())


__all__ = [
    "GC_PAUSES",
    "GC_PAUSES_CPU",
    "PauseWatch",
    "freeze_after_start",
    "freeze_loaded",
    "log_gc_pauses",
    "watch_gc_pauses",
]
