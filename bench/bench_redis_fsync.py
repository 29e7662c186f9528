"""What the embedded Redis' fsync policy costs: ``appendfsync`` no, everysec (the default) and
always, on this machine's disk.

For each policy a fresh redis-server (AOF on, no RDB snapshots, its directory on the data disk
under ``var/bench``) takes a fact-shaped write (one MULTI/EXEC: HSET, ZADD, XADD, as
``PUT /v1/facts`` sends): one writer at a time (per-write latency, writes/s) and 16 concurrent
writers (writes/s; ``always`` fsyncs once per event-loop round, so concurrency amortises it).
Writes ``redis_fsync.json`` with the load average at the start and the end.

    .venv/bin/python -m bench.bench_redis_fsync [--out var/bench]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "tests") not in sys.path:  # reuse the fixtures' server starter
    sys.path.insert(0, str(REPO / "tests"))

from hivemind_common.redis import HivemindRedis, connect_redis  # noqa: E402
from support.redis_servers import start_redis  # noqa: E402

POLICIES = ("no", "everysec", "always")
SEQUENTIAL_WRITES = 2000
CONCURRENT_WRITERS = 16
WRITES_PER_WRITER = 250


def _write(i: int, tag: str) -> tuple[tuple[Any, ...], ...]:
    key = f"hm:{{t:{tag}}}:fact:k{i}"
    return (
        ("HSET", key, "value", "x" * 200, "updated_at", f"{time.time():.6f}"),
        ("ZADD", f"hm:{{t:{tag}}}:facts", 0, f"k{i}"),
        ("XADD", f"hm:{{t:{tag}}}:changes", "MAXLEN", "~", 10000, "*", "op", "upsert", "id", i),
    )


async def _sequential(r: HivemindRedis) -> dict[str, Any]:
    samples = []
    started = time.perf_counter()
    for i in range(SEQUENTIAL_WRITES):
        t0 = time.perf_counter()
        await r.transaction(*_write(i, "seq"))
        samples.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    us = sorted(s * 1e6 for s in samples)
    return {
        "writes": SEQUENTIAL_WRITES,
        "writes_per_s": round(SEQUENTIAL_WRITES / elapsed),
        "p50_us": round(us[len(us) // 2]),
        "p95_us": round(us[int(len(us) * 0.95)]),
        "mean_us": round(statistics.fmean(us)),
    }


async def _concurrent(r: HivemindRedis) -> dict[str, Any]:
    async def writer(w: int) -> None:
        for i in range(WRITES_PER_WRITER):
            await r.transaction(*_write(i, f"c{w}"))

    started = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(CONCURRENT_WRITERS)))
    elapsed = time.perf_counter() - started
    total = CONCURRENT_WRITERS * WRITES_PER_WRITER
    return {"writers": CONCURRENT_WRITERS, "writes": total, "writes_per_s": round(total / elapsed)}


async def _measure(url: str) -> dict[str, Any]:
    r = connect_redis(url)
    try:
        await r.ping()
        return {"sequential": await _sequential(r), "concurrent": await _concurrent(r)}
    finally:
        await r.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "var" / "bench")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.out / "redis-fsync-data"
    report: dict[str, Any] = {"load_start": os.getloadavg(), "cpus": os.cpu_count()}
    for policy in POLICIES:
        shutil.rmtree(work, ignore_errors=True)
        server = start_redis(work / policy, "--appendonly", "yes", "--appendfsync", policy)
        try:
            report[policy] = asyncio.run(_measure(server.url))
        finally:
            server.stop()
        print(policy, json.dumps(report[policy]), flush=True)
    shutil.rmtree(work, ignore_errors=True)
    report["load_end"] = os.getloadavg()
    (args.out / "redis_fsync.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
