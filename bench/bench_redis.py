"""What durability and failover cost on each Redis topology.

Starts a standalone server, a 6-node Cluster and a Sentinel set (the test fixtures' starters),
then measures, per topology:

- per-write latency (p50/p95/mean, µs) of a one-key MULTI/EXEC, plain and ``durable=True``
  (WAIT for one replica on the same connection; standalone has no replica, so no WAIT),
  one writer at a time, and the throughput of 16 concurrent writers;
- on Cluster and Sentinel, a failover drill: a primary SIGKILLed under durable writes and
  reads, reporting the longest caller-visible interruption and the operations retried.

Writes ``redis.json``. All servers run on this machine's loopback: absolute numbers depend on
its load (other processes share the CPU), the plain-vs-durable difference is the point.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "tests") not in sys.path:  # reuse the fixtures' server starters
    sys.path.insert(0, str(REPO / "tests"))

from hivemind_common.redis import HivemindRedis, connect_redis  # noqa: E402
from support.redis_failover import failover_drill  # noqa: E402
from support.redis_servers import start_redis  # noqa: E402
from support.redis_topologies import kill_process, start_cluster, start_sentinel_set  # noqa: E402

SEQUENTIAL_WRITES = 2000
CONCURRENT_WRITERS = 16
WRITES_PER_WRITER = 200


def _summary(samples_s: list[float]) -> dict[str, float]:
    us = sorted(s * 1e6 for s in samples_s)
    return {
        "n": len(us),
        "p50_us": round(us[len(us) // 2], 1),
        "p95_us": round(us[int(len(us) * 0.95)], 1),
        "mean_us": round(statistics.fmean(us), 1),
    }


async def _sequential(r: HivemindRedis, durable: bool) -> dict[str, Any]:
    samples: list[float] = []
    shortfalls = 0
    for i in range(SEQUENTIAL_WRITES):
        started = time.perf_counter()
        result = await r.transaction(
            ("HSET", f"hm:{{t:bench}}:fact:{i}", "value", "x" * 64), durable=durable
        )
        samples.append(time.perf_counter() - started)
        shortfalls += not result.acknowledged
    return {**_summary(samples), "wait_shortfalls": shortfalls}


async def _concurrent(r: HivemindRedis, durable: bool) -> dict[str, Any]:
    async def writer(w: int) -> None:
        for i in range(WRITES_PER_WRITER):
            await r.transaction(
                ("HSET", f"hm:{{t:bench{w}}}:fact:{i}", "value", "x" * 64), durable=durable
            )

    started = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(CONCURRENT_WRITERS)))
    elapsed = time.perf_counter() - started
    total = CONCURRENT_WRITERS * WRITES_PER_WRITER
    return {"writers": CONCURRENT_WRITERS, "writes": total, "writes_per_s": round(total / elapsed)}


async def _write_costs(url: str) -> dict[str, Any]:
    r = connect_redis(url)
    try:
        await r.ping()
        await _sequential(r, durable=False)  # warm-up: connections, slot map
        out: dict[str, Any] = {"topology": r.topology}
        for durable in (False, True):
            name = "durable" if durable else "plain"
            out[name] = await _sequential(r, durable)
            out[f"{name}_concurrent"] = await _concurrent(r, durable)
        out["durable_extra_p50_us"] = round(out["durable"]["p50_us"] - out["plain"]["p50_us"], 1)
        return out
    finally:
        await r.aclose()


async def _drill(url: str, kill: Any) -> dict[str, Any]:
    r = connect_redis(url)
    try:
        report = await failover_drill(r, kill, victim_tag="{t:drill-a}")
        return report.as_dict()
    finally:
        await r.aclose()


def main(out_dir: Path) -> dict[str, Any]:
    """Run every measurement; write ``out_dir/redis.json`` and return the same dict."""
    results: dict[str, Any] = {
        "note": "loopback servers on a shared machine; absolute numbers are noisy",
        "sequential_writes": SEQUENTIAL_WRITES,
    }
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as tmp:
        base = Path(tmp)
        standalone = start_redis(base / "standalone")
        cluster = start_cluster(base / "cluster")
        sentinel = start_sentinel_set(base / "sentinel")
        try:
            for name, url in (
                ("standalone", standalone.url),
                ("cluster", cluster.url),
                ("sentinel", sentinel.url),
            ):
                results[name] = asyncio.run(_write_costs(url))

            victim = cluster.primary_for("hm:{t:drill-a}:x")
            results["cluster"]["failover"] = asyncio.run(
                _drill(cluster.url, lambda: (victim.port, kill_process(victim)))
            )
            primary = sentinel.primary()
            results["sentinel"]["failover"] = asyncio.run(
                _drill(sentinel.url, lambda: (primary.port, kill_process(primary)))
            )
        finally:
            standalone.stop()
            cluster.stop()
            sentinel.stop()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "redis.json").write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1] if len(sys.argv) > 1 else "var/bench")), indent=2))
