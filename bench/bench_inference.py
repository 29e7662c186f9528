"""Generation speed through the gateway vs direct llama-cpp-python, on the same prompts.

Starts Redis, the embedding and inference services and the gateway as separate processes on free
loopback ports (the stack helpers here are shared by ``bench_gateway_overhead`` and
``bench_hotswap``). Direct: ``Llama.create_chat_completion`` in this process with the same GGUF,
context and threads. Through: ``POST /v1/chat/completions`` on the gateway (retrieval off, cache
bypassed: temperature > 0 and no seed, but ``top_k=1`` so both sides generate the same tokens).
Writes ``inference.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.bench_embedding import free_port, stop_process

TOKEN = "bench-internal-token"
THREADS = int(os.environ.get("HIVEMIND_BENCH_THREADS", "1"))  # 1 thread: robust on a busy host
N_CTX = 2048
PROMPTS = [
    "Write a short story about a lighthouse keeper.",
    "Explain how a hash map works.",
    "List ten tips for writing clean Python code.",
    "Describe the water cycle in detail.",
]
MAX_TOKENS = 64
ROUNDS = 3


def wait_http(url: str, *, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


@contextmanager
def process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            stop_process(proc)


@dataclass
class Stack:
    """The URLs and keys of a running bench stack."""

    redis_url: str
    inference_url: str
    gateway_url: str
    api_key: str
    folder: Path
    embedding_url: str = ""  # empty when the stack runs without the embedding service
    procs: dict[str, Any] = field(default_factory=dict)

    def inference_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}

    def gateway_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


def make_key(redis_url: str) -> str:
    """A write key for tenant 'bench', made straight in Redis."""
    from hivemind_common.auth import ApiKeyStore
    from hivemind_common.redis import connect_redis

    async def make() -> str:
        redis = connect_redis(redis_url)
        try:
            _, key = await ApiKeyStore(redis).create(tenant="bench", role="write")
            return key
        finally:
            await redis.aclose()

    return asyncio.run(make())


@contextmanager
def llm_stack(*, embedding: bool = True, max_queue: int = 64) -> Iterator[Stack]:
    """Redis, (embedding,) inference and gateway as processes; yields their URLs."""
    folder = Path(tempfile.mkdtemp(prefix="hm-bench-llm-"))
    redis_bin = shutil.which("redis-server") or "/usr/bin/redis-server"
    ports = {name: free_port() for name in ("redis", "embedding", "inference", "gateway")}
    base = {
        **os.environ,
        "HIVEMIND_INTERNAL_TOKEN": TOKEN,
        "HIVEMIND_REDIS_URL": f"redis://127.0.0.1:{ports['redis']}/0",
        "HIVEMIND_DATA_DIR": str(folder / "var"),
        "HIVEMIND_LOG_LEVEL": "WARNING",
        # measure the code, not the gateway's protective request rate and inference cap
        "HIVEMIND_DEFAULT_KEY_RPM": "0",
        "HIVEMIND_MAX_INFERENCE_PER_TENANT": "0",
    }
    py = sys.executable
    try:
        with ExitStack() as stack:
            redis_proc = stack.enter_context(
                process(
                    [
                        redis_bin,
                        "--port",
                        str(ports["redis"]),
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--dir",
                        str(folder),
                    ],
                    base,
                    folder / "redis.log",
                )
            )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", ports["redis"])) == 0:
                        break
                time.sleep(0.05)
            urls = {n: f"http://127.0.0.1:{p}" for n, p in ports.items() if n != "redis"}
            if embedding:
                env = {**base, "HIVEMIND_PORT": str(ports["embedding"])}
                proc = stack.enter_context(
                    process([py, "-m", "hivemind_embedding"], env, folder / "embedding.log")
                )
                wait_http(urls["embedding"] + "/readyz", proc=proc)
            env = {
                **base,
                "HIVEMIND_PORT": str(ports["inference"]),
                "HIVEMIND_THREADS": str(THREADS),
                "HIVEMIND_N_CTX": str(N_CTX),
                "HIVEMIND_MAX_QUEUE": str(max_queue),
            }
            proc = stack.enter_context(
                process([py, "-m", "hivemind_inference"], env, folder / "inference.log")
            )
            wait_http(urls["inference"] + "/readyz", proc=proc)
            say("inference ready")
            env = {
                **base,
                "HIVEMIND_PORT": str(ports["gateway"]),
                "HIVEMIND_INFERENCE_URL": urls["inference"],
                "HIVEMIND_EMBEDDING_URL": urls["embedding"] if embedding else "http://127.0.0.1:9",
                "HIVEMIND_TRAINER_URL": "http://127.0.0.1:9",
                "HIVEMIND_RAG_ENABLED": "true" if embedding else "false",
            }
            proc = stack.enter_context(
                process([py, "-m", "hivemind_gateway"], env, folder / "gateway.log")
            )
            wait_http(urls["gateway"] + "/healthz", proc=proc)
            say("gateway up")
            yield Stack(
                redis_url=base["HIVEMIND_REDIS_URL"],
                inference_url=urls["inference"],
                gateway_url=urls["gateway"],
                api_key=make_key(base["HIVEMIND_REDIS_URL"]),
                folder=folder,
                embedding_url=urls["embedding"] if embedding else "",
                procs={"redis": redis_proc},
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def say(message: str) -> None:
    """Progress on stderr (benchmarks are run by hand or by `make bench`)."""
    sys.stderr.write(f"  [{time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def _body(prompt: str) -> dict[str, Any]:
    # greedy-equivalent sampling that is not "deterministic" for the cache (no seed, temp > 0)
    return {
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0.5,
        "top_k": 1,
        "top_p": 1.0,
    }


def _direct_one(llama: Any, prompt: str) -> tuple[int, float]:
    started = time.perf_counter()
    out = llama.create_chat_completion(**_body(prompt))
    return int(out["usage"]["completion_tokens"]), time.perf_counter() - started


def _through_one(client: httpx.Client, prompt: str) -> tuple[int, float]:
    body = {**_body(prompt), "model": "default", "hivemind": {"rag": False}}
    started = time.perf_counter()
    r = client.post("/v1/chat/completions", json=body)
    seconds = time.perf_counter() - started
    r.raise_for_status()
    return int(r.json()["usage"]["completion_tokens"]), seconds


def _measure(gguf: Path, stack: Stack) -> tuple[dict[str, list[float]], list[float]]:
    """Each prompt direct and through the gateway, back to back, alternating who goes first.

    Returns the totals (tokens, seconds) per side and, per back-to-back pair, the ratio of the
    two speeds: a burst of load from elsewhere on a shared machine skews one pair, not the total.
    """
    from llama_cpp import Llama

    from hivemind_common.llama_buffers import configure_llama

    configure_llama()  # as inference loads it
    llama = Llama(str(gguf), n_ctx=N_CTX, n_threads=THREADS, n_threads_batch=THREADS, verbose=False)
    totals = {"direct": [0.0, 0.0], "gateway": [0.0, 0.0]}  # tokens, seconds
    pair_ratios: list[float] = []
    headers = stack.gateway_headers()
    try:
        with httpx.Client(base_url=stack.gateway_url, headers=headers, timeout=300) as client:
            _direct_one(llama, "warm up")
            _through_one(client, "warm up")
            turn = 0
            for _ in range(ROUNDS):
                for prompt in PROMPTS:
                    sides = [
                        ("direct", lambda p: _direct_one(llama, p)),
                        ("gateway", lambda p: _through_one(client, p)),
                    ]
                    speed: dict[str, float] = {}
                    for side, run in sides if turn % 2 == 0 else sides[::-1]:
                        tokens, seconds = run(prompt)
                        totals[side][0] += tokens
                        totals[side][1] += seconds
                        speed[side] = tokens / seconds
                    pair_ratios.append(speed["gateway"] / speed["direct"])
                    turn += 1
    finally:
        llama.close()
    return totals, pair_ratios


def main(out_dir: Path) -> dict[str, Any]:
    from hivemind_common.models_paths import default_llm_gguf

    gguf = default_llm_gguf()
    with llm_stack(embedding=False) as stack:
        totals, pair_ratios = _measure(gguf, stack)
    say(f"totals (tokens, seconds): {totals}")
    direct_tps = totals["direct"][0] / totals["direct"][1]
    through_tps = totals["gateway"][0] / totals["gateway"][1]
    result = {
        "model": gguf.name,
        "threads": THREADS,
        "max_tokens": MAX_TOKENS,
        "requests_per_side": ROUNDS * len(PROMPTS),
        "direct_tokens_per_s": round(direct_tps, 1),
        "gateway_tokens_per_s": round(through_tps, 1),
        "ratio": round(through_tps / direct_tps, 3),
        "pair_ratio_median": round(statistics.median(pair_ratios), 3),
        "pair_ratio_min": round(min(pair_ratios), 3),
        "target_ratio": 0.97,
        "note": "wall time of whole requests (prompt + generation); shared 2-core machine",
    }
    (out_dir / "inference.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "var/bench")
    out.mkdir(parents=True, exist_ok=True)
    print(json.dumps(main(out), indent=2))
