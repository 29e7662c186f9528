"""Memory API requests/s: store, recall and search, one gateway process against a real Redis.

Starts a redis-server, the embedding service and one gateway, each its own process, then drives
the gateway with 16 concurrent asyncio clients: facts (PUT, GET, search), memories (POST, GET,
search) and ``/v1/rag/context``. Writes embed the text (a real call to the embedding service),
so store and search numbers include one MiniLM encode each; recall is Redis only.
Writes ``memory_api.json``. A shared 2-core machine runs all of it, the load generator
included: the numbers are a floor, and noisy.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "tests") not in sys.path:  # reuse the fixtures' redis-server starter
    sys.path.insert(0, str(REPO / "tests"))

from bench.bench_embedding import base_env, latency_summary, service_process  # noqa: E402
from bench.bench_inference import make_key  # noqa: E402
from support.redis_servers import start_redis  # noqa: E402

CLIENTS = 16
REQUESTS = 320
TOPICS = ["redis", "postgres", "neovim", "docker", "pytest", "kubernetes", "ssh", "backup"]


async def _drive(
    client: httpx.AsyncClient, make: Callable[[int], Awaitable[httpx.Response]]
) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    queue = iter(range(REQUESTS))

    async def worker() -> None:
        nonlocal errors
        for i in queue:
            t = time.perf_counter()
            r = await make(i)
            latencies.append(time.perf_counter() - t)
            errors += r.status_code >= 400

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CLIENTS)))
    elapsed = time.perf_counter() - started
    return {
        "requests": REQUESTS,
        "errors": errors,
        "requests_per_s": round(REQUESTS / elapsed, 1),
        "latency": latency_summary(latencies),
    }


async def _run(url: str, key: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=CLIENTS + 4)
    out: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as c:
        memory_ids: list[str] = []

        def topic(i: int) -> str:
            return TOPICS[i % len(TOPICS)]

        async def fact_put(i: int) -> httpx.Response:
            value = f"{topic(i)} note {i}: the {topic(i)} setting number {i} is on"
            return await c.put(f"/v1/facts/{topic(i)}.n{i}", json={"value": value})

        async def fact_get(i: int) -> httpx.Response:
            return await c.get(f"/v1/facts/{topic(i)}.n{i}")

        async def fact_search(i: int) -> httpx.Response:
            return await c.post("/v1/facts/search", json={"query": f"{topic(i)} setting {i}"})

        async def memory_store(i: int) -> httpx.Response:
            body = {"text": f"worked on {topic(i)} issue {i}", "session_id": f"s{i % 20}"}
            r = await c.post("/v1/memories", json=body)
            if r.status_code == 201:
                memory_ids.append(r.json()["id"])
            return r

        async def memory_recall(i: int) -> httpx.Response:
            return await c.get(f"/v1/memories/{memory_ids[i % len(memory_ids)]}")

        async def memory_search(i: int) -> httpx.Response:
            return await c.post("/v1/memories/search", json={"query": f"{topic(i)} issue"})

        async def rag_context(i: int) -> httpx.Response:
            return await c.post("/v1/rag/context", json={"query": f"what about {topic(i)}?"})

        for name, op in (
            ("fact_store", fact_put),
            ("fact_recall", fact_get),
            ("fact_search", fact_search),
            ("memory_store", memory_store),
            ("memory_recall", memory_recall),
            ("memory_search", memory_search),
            ("rag_context", rag_context),
        ):
            await op(0)  # warm the route
            out[name] = await _drive(c, op)
    return out


@dataclass(frozen=True)
class MemoryStack:
    redis_url: str
    embedding_url: str
    gateway_url: str
    # seconds from the embedding service's start until its compiled copy answered batches
    # (None: it has none, e.g. no C++ compiler); benches start their clocks after it
    compile_s: float | None = None
    # the compiled copy's attention ("amx": the AMX kernel, "sdpa": torch's; None: unknown)
    attention: str | None = None


def wait_compiled(url: str, token: str, deadline_s: float = 300.0) -> float | None:
    """Wait until the embedding service encodes batches with its compiled copy (built on a
    thread after start, ~30 s here): a long-running service's throughput, not its first
    minute's. Seconds waited, or None when the service has no compiled copy."""
    started = time.monotonic()
    headers = {"Authorization": f"Bearer {token}"}
    while time.monotonic() - started < deadline_s:
        state = httpx.get(f"{url}/info", headers=headers, timeout=10).json().get("compile")
        if state != "building":  # on; or off, failed: the traced copy serves everything
            return round(time.monotonic() - started, 1) if state == "on" else None
        time.sleep(0.5)
    return None


@contextmanager
def memory_stack(data_dir: Path, token: str) -> Iterator[MemoryStack]:
    """A Redis, the embedding service and a gateway in front of them (no inference or trainer),
    each its own process, until the block ends: what the memory benches measure through."""
    redis = start_redis(data_dir / "redis")
    try:
        env = base_env(data_dir, token)
        with service_process("hivemind_embedding", env) as emb_url:
            compile_s = wait_compiled(emb_url, token)
            info = httpx.get(
                f"{emb_url}/info", headers={"Authorization": f"Bearer {token}"}, timeout=10
            ).json()
            gw_env = {
                **env,
                "HIVEMIND_REDIS_URL": redis.url,
                "HIVEMIND_EMBEDDING_URL": emb_url,
                "HIVEMIND_INFERENCE_URL": "http://127.0.0.1:9",
                "HIVEMIND_TRAINER_URL": "http://127.0.0.1:9",
            }
            with service_process("hivemind_gateway", gw_env) as gw_url:
                yield MemoryStack(redis.url, emb_url, gw_url, compile_s, info.get("attention"))
    finally:
        redis.stop()


def main(out_dir: Path) -> dict[str, Any]:
    token = secrets.token_hex(16)
    with tempfile.TemporaryDirectory() as tmp, memory_stack(Path(tmp), token) as stack:
        key = make_key(stack.redis_url)
        result: dict[str, Any] = asyncio.run(_run(stack.gateway_url, key))
    result["clients"] = CLIENTS
    result["load_average"] = os.getloadavg()
    result["note"] = "gateway, embedding, redis and the load generator share 2 busy cores"
    (out_dir / "memory_api.json").write_text(json.dumps(result, indent=2))
    return {
        k: v["requests_per_s"]
        for k, v in result.items()
        if isinstance(v, dict) and "requests_per_s" in v
    }


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "var" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    print(json.dumps(main(out), indent=2))
