"""Suite-wide sections of ``GET /v1/stats`` for the console's overview and models pages.

``redis`` names the topology to every key and adds each primary's replicas and memory for an
operator; ``requests`` (the gateway's requests by status class, every worker process together)
and ``disk``
(the data directory and each model version's files) are suite-wide, so only an operator sees
them (anyone else gets ``{"error": ...}`` in their place, like a failing section).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from hivemind_common.auth import Principal
from hivemind_common.model_registry import ModelRegistry
from hivemind_common.observability import HTTP_REQUESTS
from hivemind_common.scrape_metrics import primaries_info
from hivemind_common.service_app import MULTIPROC_ENV
from hivemind_gateway.state import GatewayState
from hivemind_gateway.stats.sections import stats_section

OPERATOR_ONLY = {"error": "suite-wide figures need an operator key"}
STARTED_AT = time.time()


@stats_section("redis")
async def redis_stats(state: GatewayState, principal: Principal) -> dict[str, Any]:
    """The Redis topology; for an operator, each primary's replicas and memory."""
    out: dict[str, Any] = {"topology": state.redis.topology}
    if not principal.is_operator:
        return out
    replication = await primaries_info(state.redis, "replication")
    memory = await primaries_info(state.redis, "memory")
    out["primaries"] = sum(1 for i in replication.values() if i.get("role") == "master")
    out["nodes"] = {
        node: {
            "role": info.get("role"),
            "connected_replicas": int(info.get("connected_slaves", 0)),
            "used_memory_bytes": int(memory.get(node, {}).get("used_memory", 0)),
        }
        for node, info in sorted(replication.items())
    }
    return out


@stats_section("requests")
async def request_stats(state: GatewayState, principal: Principal) -> dict[str, Any]:
    """Requests this gateway answered since it started, by status class, and their rate."""
    if not principal.is_operator:
        return OPERATOR_ONLY
    by_class: dict[str, float] = {}
    for metric in await asyncio.to_thread(_request_metrics):
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels.get("service") == "gateway":
                status = sample.labels.get("status", "other")
                by_class[status] = by_class.get(status, 0.0) + sample.value
    total = int(sum(by_class.values()))
    uptime = max(1.0, time.time() - STARTED_AT)
    return {
        "total": total,
        "errors_4xx": int(by_class.get("4xx", 0)),
        "errors_5xx": int(by_class.get("5xx", 0)),
        "per_s_since_start": round(total / uptime, 3),
        "uptime_s": int(uptime),
    }


def _request_metrics() -> Iterable[Metric]:
    """The request counter of this process, or summed over every worker process when the
    gateway runs several (Prometheus' multiprocess mode, as ``/metrics`` reads it)."""
    shared = os.environ.get(MULTIPROC_ENV)
    if not shared:
        return list(HTTP_REQUESTS.collect())
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=shared)
    return [m for m in registry.collect() if m.name == "hivemind_http_requests"]


def _tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


@stats_section("disk")
async def disk_stats(state: GatewayState, principal: Principal) -> dict[str, Any]:
    """The data directory's disk and the bytes of every registered model version."""
    if not principal.is_operator:
        return OPERATOR_ONLY
    data_dir = Path(state.settings.data_dir)
    registry = ModelRegistry(state.redis, data_dir)
    versions = await registry.list(None)

    def measure() -> dict[str, Any]:
        usage = shutil.disk_usage(data_dir)
        sizes = []
        for mv in versions:
            directory = registry.version_dir(mv.name, mv.version)
            size = _tree_bytes(directory) if directory.is_dir() else 0
            sizes.append({"name": mv.name, "version": mv.version, "bytes": size})
        models = data_dir / "models"
        return {
            "free_bytes": usage.free,
            "total_bytes": usage.total,
            "models_bytes": _tree_bytes(models) if models.is_dir() else 0,
            "versions": sizes,
        }

    return await asyncio.to_thread(measure)
