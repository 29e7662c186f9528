"""Gauges sampled when Prometheus scrapes ``/metrics``: readiness, Redis health, data-dir disk.

The alert rules in ``deploy/prometheus/alerts.yml`` read these. Each sampler is cheap (one
``INFO`` per Redis primary, one ``statvfs``) and has a timeout, so a slow dependency shows as a
failing sample, never as a hung scrape. Labels stay low-cardinality: the service, or the Redis
node's ``host:port`` (six at most).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from prometheus_client import Gauge

from hivemind_common.redis import HivemindRedis

log = logging.getLogger(__name__)

Sampler = Callable[[], Awaitable[None]]
SAMPLE_TIMEOUT_S = 2.0

SERVICE_READY = Gauge(
    "hivemind_service_ready",
    "1 when /readyz would answer 200 at the latest scrape, else 0.",
    ["service"],
)
REDIS_PRIMARIES = Gauge(
    "hivemind_redis_primaries",
    "Redis primaries that answered at the latest scrape (0: no primary reachable).",
)
REDIS_CONNECTED_REPLICAS = Gauge(
    "hivemind_redis_connected_replicas",
    "Replicas connected to each Redis primary at the latest scrape.",
    ["node"],
)
REDIS_USED_MEMORY = Gauge(
    "hivemind_redis_used_memory_bytes", "used_memory of each Redis primary.", ["node"]
)
REDIS_MAXMEMORY = Gauge(
    "hivemind_redis_maxmemory_bytes",
    "maxmemory of each Redis primary (0: no limit set).",
    ["node"],
)
REDIS_REPLICATED = Gauge(
    "hivemind_redis_replicated",
    "1 where the Redis topology keeps replicas (Cluster, Sentinel), 0 for a single Redis.",
)
DATA_DIR_FREE = Gauge(
    "hivemind_data_dir_free_bytes", "Bytes free to this service on $HIVEMIND_DATA_DIR's disk."
)
DATA_DIR_SIZE = Gauge("hivemind_data_dir_size_bytes", "Size of $HIVEMIND_DATA_DIR's disk in bytes.")


async def primaries_info(redis: HivemindRedis, section: str) -> dict[str, dict[str, Any]]:
    """``INFO <section>`` of every primary: ``{"host:port": info}`` (one entry on standalone)."""
    client = await redis.backend.client()
    if redis.topology == "cluster":
        await client.initialize()
        out: dict[str, dict[str, Any]] = {}
        for node in client.get_primaries():
            out[node.name] = await client.info(section, target_nodes=node)
        return out
    kwargs = client.connection_pool.connection_kwargs
    return {f"{kwargs.get('host')}:{kwargs.get('port')}": await client.info(section)}


def redis_sampler(redis: HivemindRedis) -> Sampler:
    """Sets the Redis gauges from INFO replication/memory of every primary."""
    seen: set[str] = set()

    def unreachable() -> None:
        # what a scrape sees of a Redis that does not answer: no primary, no replica
        REDIS_PRIMARIES.set(0)
        for node in seen:
            REDIS_CONNECTED_REPLICAS.labels(node).set(0)

    async def sample() -> None:
        REDIS_REPLICATED.set(1 if redis.topology in ("cluster", "sentinel") else 0)
        try:
            # inside the sampler's own deadline, so a host that hangs (powered off, cut off)
            # reads as down rather than leaving the last healthy values in place
            async with asyncio.timeout(SAMPLE_TIMEOUT_S * 0.8):
                repl = await primaries_info(redis, "replication")
                memory = await primaries_info(redis, "memory")
        except Exception as exc:  # a scrape reports what it sees; Redis down is a value
            log.warning("redis sample failed: %s", type(exc).__name__)
            unreachable()
            return
        primaries = {n for n, info in repl.items() if info.get("role") == "master"}
        REDIS_PRIMARIES.set(len(primaries))
        for gone in seen - set(repl):
            for gauge in (REDIS_CONNECTED_REPLICAS, REDIS_USED_MEMORY, REDIS_MAXMEMORY):
                with contextlib.suppress(KeyError):
                    gauge.remove(gone)
        seen.clear()
        seen.update(repl)
        for node, info in repl.items():
            REDIS_CONNECTED_REPLICAS.labels(node).set(int(info.get("connected_slaves", 0)))
            mem = memory.get(node, {})
            REDIS_USED_MEMORY.labels(node).set(int(mem.get("used_memory", 0)))
            REDIS_MAXMEMORY.labels(node).set(int(mem.get("maxmemory", 0)))

    return sample


def disk_sampler(path: Path) -> Sampler:
    """Sets the data-dir disk gauges from ``statvfs`` of ``path`` (or its nearest parent)."""

    async def sample() -> None:
        target = path
        while not target.exists() and target != target.parent:
            target = target.parent
        st = os.statvfs(target)
        DATA_DIR_FREE.set(st.f_bavail * st.f_frsize)
        DATA_DIR_SIZE.set(st.f_blocks * st.f_frsize)

    return sample


async def run_samplers(samplers: list[Sampler]) -> None:
    """Run every sampler with a timeout; one failing leaves the others' values fresh."""

    async def one(sampler: Sampler) -> None:
        try:
            await asyncio.wait_for(sampler(), SAMPLE_TIMEOUT_S)
        except Exception as exc:  # a sample is best effort; the gauge keeps its last value
            log.warning("metrics sample failed: %s", type(exc).__name__)

    await asyncio.gather(*(one(s) for s in samplers))
