"""MCP bridge latency: ``fact_get`` through MCP over streamable HTTP vs the same call direct.

Starts Redis, the embedding service, the gateway and the bridge as separate processes on free
loopback ports (as ``make run`` would), stores one fact, then times the two paths interleaved:
``GET /v1/facts/{key}`` straight to the gateway, and ``tools/call fact_get`` over an open MCP
session. The bridge's added latency is the difference of the medians. Writes ``mcp.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path
from typing import Any

import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from bench.bench_inference import free_port, make_key, process, wait_http

WARMUP = 30
ROUNDS = 400
TOKEN = "bench-internal-token"
FACT_KEY = "bench.test_command"


def _service(stack: ExitStack, module: str, work: Path, env: dict[str, str], **extra: str) -> str:
    port = free_port()
    proc_env = {**env, "HIVEMIND_PORT": str(port), **extra}
    proc = stack.enter_context(
        process([sys.executable, "-m", module], proc_env, work / f"{module}-{port}.log")
    )
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/readyz", proc=proc)
    return base


def _summary(samples_s: list[float]) -> dict[str, float]:
    ms = sorted(x * 1000 for x in samples_s)
    return {
        "p50_ms": round(statistics.median(ms), 3),
        "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


async def _measure(gateway: str, bridges: dict[str, str], key: str) -> dict[str, list[float]]:
    """Interleave the direct call and one call through each bridge, round after round."""
    headers = {"Authorization": f"Bearer {key}"}
    samples: dict[str, list[float]] = {"direct": [], **{name: [] for name in bridges}}
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(
            httpx.AsyncClient(base_url=gateway, headers=headers, timeout=30)
        )
        http2 = await stack.enter_async_context(httpx2.AsyncClient(headers=headers, timeout=30))
        clients = {
            name: await stack.enter_async_context(
                Client(streamable_http_client(url + "/mcp", http_client=http2))
            )
            for name, url in bridges.items()
        }
        put = await http.put(f"/v1/facts/{FACT_KEY}", json={"value": "make test"})
        put.raise_for_status()
        for i in range(WARMUP + ROUNDS):
            t0 = time.perf_counter()
            response = await http.get(f"/v1/facts/{FACT_KEY}")
            elapsed = time.perf_counter() - t0
            response.raise_for_status()
            if i >= WARMUP:
                samples["direct"].append(elapsed)
            for name, client in clients.items():
                t0 = time.perf_counter()
                result = await client.call_tool("fact_get", {"key": FACT_KEY})
                elapsed = time.perf_counter() - t0
                if result.is_error:
                    raise RuntimeError(f"fact_get through MCP failed: {result.content}")
                if i >= WARMUP:
                    samples[name].append(elapsed)
    return samples


def main(out_dir: Path) -> dict[str, Any]:
    """Run the benchmark; write and return ``mcp.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    redis_bin = shutil.which("redis-server") or "/usr/bin/redis-server"
    with tempfile.TemporaryDirectory(prefix="bench-mcp-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        redis_port = free_port()
        redis_cmd = [redis_bin, "--port", str(redis_port), "--bind", "127.0.0.1"]
        redis_cmd += ["--save", "", "--appendonly", "no", "--dir", tmp]
        redis = stack.enter_context(process(redis_cmd, dict(os.environ), work / "redis.log"))
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        env = {
            **os.environ,
            "HIVEMIND_REDIS_URL": redis_url,
            "HIVEMIND_INTERNAL_TOKEN": TOKEN,
            "HIVEMIND_DATA_DIR": str(work / "var"),
            "HIVEMIND_LOG_LEVEL": "WARNING",
            # measure the bridge, not the gateway's protective request rate
            "HIVEMIND_DEFAULT_KEY_RPM": "0",
        }
        deadline = time.monotonic() + 10
        while redis.poll() is None and time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", redis_port)) == 0:
                    break
            time.sleep(0.05)
        embedding = _service(stack, "hivemind_embedding", work, env)
        gateway = _service(
            stack,
            "hivemind_gateway",
            work,
            env,
            HIVEMIND_EMBEDDING_URL=embedding,
            HIVEMIND_INFERENCE_URL="http://127.0.0.1:9",
            HIVEMIND_TRAINER_URL="http://127.0.0.1:9",
        )
        bridges = {
            # the default configuration (SSE-framed answers, stateful sessions)
            "mcp_over_http": _service(
                stack, "hivemind_mcp", work, env, HIVEMIND_GATEWAY_URL=gateway
            ),
            # HIVEMIND_JSON_RESPONSE=true: plain JSON answers
            "mcp_over_http_json": _service(
                stack,
                "hivemind_mcp",
                work,
                env,
                HIVEMIND_GATEWAY_URL=gateway,
                HIVEMIND_JSON_RESPONSE="true",
            ),
        }
        key = make_key(redis_url)
        samples = asyncio.run(_measure(gateway, bridges, key))

    direct = _summary(samples["direct"])
    via = {name: _summary(samples[name]) for name in bridges}
    result: dict[str, Any] = {
        "rounds": ROUNDS,
        "warmup": WARMUP,
        "direct_gateway": direct,
        **via,
        "added_p50_ms": round(via["mcp_over_http"]["p50_ms"] - direct["p50_ms"], 3),
        "added_p95_ms": round(via["mcp_over_http"]["p95_ms"] - direct["p95_ms"], 3),
        "added_p50_ms_json": round(via["mcp_over_http_json"]["p50_ms"] - direct["p50_ms"], 3),
        "target_added_p50_ms": 10.0,
        "cpu_count": os.cpu_count(),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "note": "client, bridge, gateway and Redis share this machine's cores",
    }
    result["meets_target"] = result["added_p50_ms"] <= result["target_added_p50_ms"]
    (out_dir / "mcp.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1] if len(sys.argv) > 1 else "var/bench")), indent=2))
