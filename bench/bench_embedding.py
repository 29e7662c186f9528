"""Embedding throughput with 16 concurrent clients, micro-batching on and off.

Starts the embedding service twice as its own process (``python -m hivemind_embedding``, the
shipped all-MiniLM-L6-v2), once with ``HIVEMIND_EMBEDDING_BATCHING=true`` and once with
``false``; 16 asyncio clients each send one short text per request over their own keep-alive
connection. Reports texts/s and latency for both and their ratio, then the same with httpx
clients (whose CPU, on the same two cores, weighs on both modes).

Then bursts: what the gateway's vector worker does after a batch of memories is stored. The
LoCoMo development split's turns, as the worker embeds them ("speaker: text"), are sent 64 to a
request, one request at a time, to the service with one forward pass per request
(``HIVEMIND_EMBEDDING_SUB_BATCH=64``, as before) and with passes of 16 texts of like length
(the default): texts/s for each, alternated twice. Writes ``embedding.json``.

The process helpers here (``service_process``) are also used by the retrieval and memory API
benchmarks. All numbers are from a shared 2-core machine: other processes' load makes them
noisy; the batched/unbatched ratio is the point.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
CLIENTS = 16
REQUESTS_PER_CLIENT = 24
SENTENCES = [
    "which port does the local redis listen on",
    "how do I run the unit tests quickly",
    "the build machine has sixteen cores and 64 GB of memory",
    "postgres runs in a container on localhost",
    "where are the application logs written",
    "rotate the API keys every ninety days",
    "neovim with lazyvim is the main editor",
    "backups run every night at two",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Terminate, then kill if it has not gone within 15 s."""
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def base_env(data_dir: Path, token: str) -> dict[str, str]:
    # the caller's HIVEMIND_EMBEDDING_* settings (threads, window, batch size) pass through
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("HIVEMIND_") or k.startswith("HIVEMIND_EMBEDDING_")
    }
    env.update(
        HIVEMIND_DATA_DIR=str(data_dir),
        HIVEMIND_INTERNAL_TOKEN=token,
        HIVEMIND_HOSTS_FILE=str(REPO / "hosts.yaml"),
        HIVEMIND_LOG_LEVEL="WARNING",
    )
    return env


@contextmanager
def service_process(
    module: str, env: dict[str, str], *, ready_path: str = "/readyz", timeout: float = 120
) -> Iterator[str]:
    """Run ``python -m <module>`` on a free port until the block ends; yields its URL."""
    port = free_port()
    # a benchmark measures what the code can do: the gateway's request rate and inference cap
    # (which protect a shared suite) are off unless a benchmark sets them
    env = {
        "HIVEMIND_DEFAULT_KEY_RPM": "0",
        "HIVEMIND_MAX_INFERENCE_PER_TENANT": "0",
        **env,
        "HIVEMIND_PORT": str(port),
        "HIVEMIND_HOST": "127.0.0.1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", module], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode()[-2000:] if proc.stderr else ""
                raise RuntimeError(f"{module} exited during start-up: {err}")
            try:
                if httpx.get(url + ready_path, timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{module} not ready after {timeout}s")
            time.sleep(0.1)
        yield url
    finally:
        stop_process(proc)


def latency_summary(samples_s: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples_s)
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "p50_ms": round(ms[len(ms) // 2], 2),
        "p95_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.95))], 2),
        "mean_ms": round(statistics.fmean(ms), 2),
    }


class _Conn:
    """One keep-alive HTTP/1.1 connection that POSTs JSON and reads the reply.

    The load generator shares the service's two cores, so its own CPU per request is taken
    from the service. httpx costs about 1.3 ms of client CPU per request here, this about
    0.1 ms (like wrk or hey would): the figures then measure the service, not the client.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, token: str):
        self._reader, self._writer = reader, writer
        self._head = f"Host: bench\r\nAuthorization: Bearer {token}\r\n"

    @classmethod
    async def open(cls, url: str, token: str) -> _Conn:
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        return cls(reader, writer, token)

    async def post(self, path: str, body: dict[str, Any]) -> bytes:
        data = json.dumps(body).encode()
        self._writer.write(
            f"POST {path} HTTP/1.1\r\n{self._head}Content-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n".encode()
            + data
        )
        await self._writer.drain()
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1]
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        payload = await self._reader.readexactly(length)
        if status != b"200":
            raise RuntimeError(f"{path} answered {status.decode()}: {payload[:200]!r}")
        return payload

    def close(self) -> None:
        self._writer.close()


def _text(n: int, i: int) -> str:
    return f"{SENTENCES[(n + i) % len(SENTENCES)]} (client {n}, request {i})"


async def _load(url: str, token: str, *, client_kind: str = "raw") -> dict[str, Any]:
    """16 clients, each sending one text per request, one request at a time."""
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=CLIENTS + 4)
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as c:
        for s in SENTENCES:  # warm up
            (await c.post("/embed", json={"texts": [s]})).raise_for_status()
        before = (await c.get("/info")).json()

        async def raw_client(n: int) -> None:
            conn = await _Conn.open(url, token)
            try:
                for i in range(REQUESTS_PER_CLIENT):
                    t = time.perf_counter()
                    await conn.post("/embed", {"texts": [_text(n, i)]})
                    latencies.append(time.perf_counter() - t)
            finally:
                conn.close()

        async def httpx_client(n: int) -> None:
            for i in range(REQUESTS_PER_CLIENT):
                t = time.perf_counter()
                (await c.post("/embed", json={"texts": [_text(n, i)]})).raise_for_status()
                latencies.append(time.perf_counter() - t)

        one = raw_client if client_kind == "raw" else httpx_client
        cpu = time.process_time()
        started = time.perf_counter()
        await asyncio.gather(*(one(n) for n in range(CLIENTS)))
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        after = (await c.get("/info")).json()
    texts = CLIENTS * REQUESTS_PER_CLIENT
    batches = after["batches"] - before["batches"]
    return {
        "texts": texts,
        "seconds": round(elapsed, 2),
        "texts_per_s": round(texts / elapsed, 1),
        "encoder_calls": batches,
        "mean_batch": round(texts / max(batches, 1), 2),
        "client_cpu_ms_per_request": round(cpu * 1000 / texts, 3),
        "latency": latency_summary(latencies),
    }


BURST_REQUEST = 64  # texts per request, as the gateway's vector worker sends them
BURST_TEXTS = 1024


def burst_texts() -> list[str]:
    """LoCoMo turns as the gateway embeds memories; short sentences when the data is absent."""
    from bench.locomo_data import DEFAULT_DIR, load

    if DEFAULT_DIR.is_dir():
        texts = [f"{t.speaker}: {t.text}" for c in load(DEFAULT_DIR) for t in c.turns]
    else:
        texts = [_text(n, i) for n in range(CLIENTS) for i in range(64)]
    return texts[:BURST_TEXTS]


async def _burst(url: str, token: str, texts: list[str]) -> dict[str, Any]:
    """``texts`` in requests of ``BURST_REQUEST``, one in flight: texts/s of a burst."""
    conn = await _Conn.open(url, token)
    try:
        await conn.post("/embed", {"texts": texts[:BURST_REQUEST]})  # warm up
        started = time.perf_counter()
        for i in range(0, len(texts), BURST_REQUEST):
            await conn.post("/embed", {"texts": texts[i : i + BURST_REQUEST]})
        elapsed = time.perf_counter() - started
    finally:
        conn.close()
    return {
        "texts": len(texts),
        "seconds": round(elapsed, 2),
        "texts_per_s": round(len(texts) / elapsed, 1),
    }


def bursts(tmp: Path, token: str, rounds: int = 2) -> dict[str, Any]:
    """A burst's texts/s with one forward pass per request and with passes of 16."""
    texts = burst_texts()
    out: dict[str, Any] = {"request_texts": BURST_REQUEST, "texts": len(texts)}
    for _ in range(rounds):
        for name, sub in (("one_pass_per_request", "64"), ("passes_of_16", "16")):
            env = base_env(tmp, token)
            env["HIVEMIND_EMBEDDING_SUB_BATCH"] = sub
            with service_process("hivemind_embedding", env) as url:
                figure = asyncio.run(_burst(url, token, texts))
            figure["load_average"] = [round(x, 2) for x in os.getloadavg()]
            out.setdefault(name, []).append(figure)
    for name in ("one_pass_per_request", "passes_of_16"):
        out[f"{name}_best_texts_per_s"] = max(f["texts_per_s"] for f in out[name])
    return out


def main(out_dir: Path) -> dict[str, Any]:
    token = secrets.token_hex(16)
    result: dict[str, Any] = {
        "clients": CLIENTS,
        "requests_per_client": REQUESTS_PER_CLIENT,
        "client": "keep-alive HTTP/1.1 over asyncio streams (httpx figures under with_httpx)",
    }
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("batched", "unbatched"):
            env = base_env(Path(tmp), token)
            env["HIVEMIND_EMBEDDING_BATCHING"] = "true" if mode == "batched" else "false"
            with service_process("hivemind_embedding", env) as url:
                result[mode] = asyncio.run(_load(url, token))
                result.setdefault("with_httpx", {})[mode] = asyncio.run(
                    _load(url, token, client_kind="httpx")
                )
        result["bursts"] = bursts(Path(tmp), token)
    result["speedup"] = _ratio(result["batched"], result["unbatched"])
    result["with_httpx"]["speedup"] = _ratio(
        result["with_httpx"]["batched"], result["with_httpx"]["unbatched"]
    )
    result["load_average"] = os.getloadavg()
    result["note"] = "shared 2-core machine; other processes' load makes these noisy"
    (out_dir / "embedding.json").write_text(json.dumps(result, indent=2))
    return result


def _ratio(batched: dict[str, Any], unbatched: dict[str, Any]) -> float:
    return round(batched["texts_per_s"] / max(unbatched["texts_per_s"], 1e-9), 2)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--bursts"]:  # only the burst figures
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(bursts(Path(tmp), secrets.token_hex(16)), indent=2))
        raise SystemExit(0)
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "var" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    print(json.dumps(main(out), indent=2))
