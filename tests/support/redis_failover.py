"""A failover drill: writers and readers run while a primary is SIGKILLed; nothing may be lost.

Used by the failover tests (``tests/common/test_redis_failover.py``) and by ``bench/bench_redis.py``
to report the interruption callers saw and how many operations the connector retried.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from hivemind_common.redis import HivemindRedis


@dataclass
class DrillReport:
    """What one drill observed; ``as_dict()`` is what tests print and the benchmark stores."""

    topology: str
    killed_port: int = 0
    killed_pid: int = 0
    writes_acknowledged: int = 0
    writes_without_replica_ack: int = 0
    reads: int = 0
    wrong_reads: int = 0
    failed_operations: list[str] = field(default_factory=list)
    missing_writes: list[str] = field(default_factory=list)  # acknowledged by a replica, gone
    missing_unacknowledged: int = 0  # returned without a replica's ack (no replica left), gone
    retried_operations: int = 0
    retries: int = 0
    interruption_ms: float = 0.0
    longest_write_gap_ms: float = 0.0
    recovered_after_ms: float = 0.0  # kill -> first write begun after it is done

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["failed_operations"] = out["failed_operations"][:10]
        out["missing_writes"] = out["missing_writes"][:10]
        return out


@dataclass
class _Writer:
    tag: str
    acked: dict[str, str] = field(default_factory=dict)
    unacked: dict[str, str] = field(default_factory=dict)
    done_at: list[float] = field(default_factory=list)
    started_at: list[float] = field(default_factory=list)


async def failover_drill(
    r: HivemindRedis,
    kill: Callable[[], tuple[int, int]],
    *,
    victim_tag: str,
    other_tags: tuple[str, ...] = ("{t:drill-b}", "{t:drill-c}", "{t:drill-d}"),
    before: int = 50,
    after: int = 50,
    readers: int = 2,
    timeout: float = 60.0,
) -> DrillReport:
    """Write durably from one writer per tag, read back, ``kill()`` the primary of ``victim_tag``
    once ``before`` writes landed, stop once its writer has ``after`` more, then check every
    acknowledged write. ``kill`` returns (port, pid) of what it killed."""
    report = DrillReport(topology=r.topology)
    writers = [_Writer(victim_tag), *(_Writer(t) for t in other_tags)]
    stop = asyncio.Event()
    durations: list[float] = []
    base_retried, base_retries = r.stats.retried_operations, r.stats.retries

    async def write_loop(w: _Writer, wid: int) -> None:
        seq = 0
        while not stop.is_set():
            key, value = f"hm:{w.tag}:drill:{wid}:{seq}", f"v{seq}-{random.random():.6f}"
            started = time.perf_counter()
            try:
                result = await r.transaction(
                    ("SET", key, value), ("SADD", f"hm:{w.tag}:drill:index", key), durable=True
                )
            except Exception as exc:
                report.failed_operations.append(f"write {key}: {exc!r}")
                continue
            finally:
                seq += 1
            durations.append(time.perf_counter() - started)
            w.done_at.append(time.perf_counter())
            w.started_at.append(started)
            if result.acknowledged:
                w.acked[key] = value
            else:
                w.unacked[key] = value
                report.writes_without_replica_ack += 1

    async def read_loop() -> None:
        while not stop.is_set():
            w = random.choice(writers)
            if not w.acked:
                await asyncio.sleep(0.005)
                continue
            key = random.choice(list(w.acked))
            started = time.perf_counter()
            try:
                value = await r.get(key)
            except Exception as exc:
                report.failed_operations.append(f"read {key}: {exc!r}")
                continue
            durations.append(time.perf_counter() - started)
            report.reads += 1
            if value != w.acked[key]:
                report.wrong_reads += 1

    async def wait_for(cond: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise TimeoutError(f"failover drill: timed out waiting for {what}")
            await asyncio.sleep(0.01)

    tasks = [asyncio.create_task(write_loop(w, i)) for i, w in enumerate(writers)]
    tasks += [asyncio.create_task(read_loop()) for _ in range(readers)]
    try:
        await wait_for(
            lambda: len(writers[0].done_at) >= before, f"{before} writes before the kill"
        )
        killed_at = time.perf_counter()
        report.killed_port, report.killed_pid = kill()
        victim = writers[0]
        await wait_for(
            lambda: sum(t > killed_at for t in victim.done_at) >= after,
            f"{after} writes after the kill",
        )
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)

    after_kill = [t for t in victim.done_at if t > killed_at]
    fresh = [d for s, d in zip(victim.started_at, victim.done_at, strict=True) if s > killed_at]
    report.recovered_after_ms = round((min(fresh) - killed_at) * 1000, 1)
    before_kill = [t for t in victim.done_at if t <= killed_at]
    times = [before_kill[-1] if before_kill else killed_at, *after_kill]
    report.longest_write_gap_ms = round(max(b - a for a, b in itertools.pairwise(times)) * 1000, 1)
    report.interruption_ms = round(max(durations) * 1000, 1)
    report.retried_operations = r.stats.retried_operations - base_retried
    report.retries = r.stats.retries - base_retries
    for w in writers:
        report.missing_writes += await _missing(r, w.acked)
        report.missing_unacknowledged += len(await _missing(r, w.unacked))
        report.writes_acknowledged += len(w.acked)
    return report


async def _missing(r: HivemindRedis, expected: dict[str, str]) -> list[str]:
    """Keys whose value is not what the write that returned had put there."""
    keys = list(expected)
    missing: list[str] = []
    for i in range(0, len(keys), 500):  # one writer's keys share a hash tag: one slot
        chunk = keys[i : i + 500]
        values = await r.mget(chunk)
        missing += [k for k, v in zip(chunk, values, strict=True) if v != expected[k]]
    return missing
