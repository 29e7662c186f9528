"""``python -m hivemind_gateway`` with HIVEMIND_GATEWAY_WORKERS: several processes on one port,
one /metrics for all of them, a clean stop (issue 17)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from support.gateway import create_api_key
from support.waiting import free_port, wait_until

# one socket per worker (SO_REUSEPORT) and `ss` to see them: Linux
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux sockets")


def _served_requests(base: str) -> float:
    text = httpx.get(base + "/metrics", timeout=10).text
    pattern = r'hivemind_http_requests_total\{[^}]*route="/v1/facts/\{key:path\}"[^}]*\} (\S+)'
    return sum(float(v) for v in re.findall(pattern, text))


def _holders(port: int) -> set[int]:
    out = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True)
    return {int(p) for p in re.findall(r"pid=(\d+)", out.stdout)}


def _listening_sockets(port: int) -> int:
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True)
    return len(out.stdout.strip().splitlines())


def _serving_pids(port: int) -> set[int]:
    """The processes holding the server side of established connections to ``port``."""
    out = subprocess.run(
        ["ss", "-tnpH", "state", "established", f"sport = :{port}"],
        capture_output=True,
        text=True,
    )
    return {int(p) for p in re.findall(r"pid=(\d+)", out.stdout)}


def _env(port: int, redis_url: str, internal_token: str, data_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "HIVEMIND_GATEWAY_WORKERS": "2",
        "HIVEMIND_PORT": str(port),
        "HIVEMIND_REDIS_URL": redis_url,
        "HIVEMIND_INTERNAL_TOKEN": internal_token,
        "HIVEMIND_DATA_DIR": str(data_dir),
        "HIVEMIND_EMBEDDING_URL": "http://127.0.0.1:9",
        "HIVEMIND_INFERENCE_URL": "http://127.0.0.1:9",
        "HIVEMIND_LOG_LEVEL": "WARNING",
    }


def _start(port: int, redis_url: str, internal_token: str, data_dir: Path) -> subprocess.Popen:
    env = _env(port, redis_url, internal_token, data_dir)
    proc = subprocess.Popen([sys.executable, "-m", "hivemind_gateway"], env=env)
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: len(_holders(port)) == 3, timeout=120, what="a supervisor, 2 workers")
    wait_until(
        lambda: httpx.get(base + "/readyz", timeout=2).status_code == 200,
        timeout=120,
        what="the workers to be ready",
    )
    return proc


def _stop(proc: subprocess.Popen, port: int) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode == 0
    wait_until(lambda: not _holders(port), timeout=30, what="no process left on the port")


def test_two_workers_share_the_port_report_one_metrics_and_stop_cleanly(
    redis_url: str, internal_token: str, data_dir: Path
) -> None:
    port = free_port()
    proc = _start(port, redis_url, internal_token, data_dir)
    base = f"http://127.0.0.1:{port}"
    try:
        assert _listening_sockets(port) == 2  # one accept queue per worker (SO_REUSEPORT)
        headers = {
            "Authorization": f"Bearer {create_api_key(redis_url, tenant='acme', role='write')}"
        }
        for i in range(20):  # a new connection each: the kernel spreads them over the workers
            r = httpx.get(f"{base}/v1/facts/k{i}", headers=headers, timeout=30)
            assert r.status_code == 404, r.text
        # every worker's requests in one scrape, whichever worker answers it
        assert _served_requests(base) == 20
        assert _served_requests(base) == 20
    finally:
        _stop(proc, port)


def test_a_burst_of_keep_alive_connections_lands_on_every_worker(
    redis_url: str, internal_token: str, data_dir: Path
) -> None:
    """wrk opens its connections at once; with one shared socket the first worker to wake
    accepted all of them and the other core sat idle."""
    port = free_port()
    proc = _start(port, redis_url, internal_token, data_dir)
    base = f"http://127.0.0.1:{port}"
    clients = [httpx.Client(base_url=base, timeout=30) for _ in range(16)]
    try:
        for client in clients:  # each client keeps its one connection open
            assert client.get("/healthz").status_code == 200
        workers = _holders(port) - {proc.pid}
        assert len(workers) == 2
        # 16 connections on one of two workers by chance: 2 * 2**-16
        assert _serving_pids(port) == workers
    finally:
        for client in clients:
            client.close()
        _stop(proc, port)


def test_a_killed_worker_is_replaced_and_no_request_is_refused(
    redis_url: str, internal_token: str, data_dir: Path
) -> None:
    port = free_port()
    proc = _start(port, redis_url, internal_token, data_dir)
    base = f"http://127.0.0.1:{port}"
    try:
        victim = min(_holders(port) - {proc.pid})
        os.kill(victim, signal.SIGKILL)
        # new connections meanwhile queue on the dead worker's socket (the supervisor keeps it
        # open) until its replacement serves them: slow, never refused
        for _ in range(12):
            assert httpx.get(base + "/healthz", timeout=120).status_code == 200
        wait_until(
            lambda: len(_holders(port) - {proc.pid, victim}) == 2,
            timeout=120,
            what="a new worker in the killed one's place",
        )
        assert _listening_sockets(port) == 2
    finally:
        _stop(proc, port)


def test_a_second_gateway_on_a_port_in_use_refuses_to_start(
    redis_url: str, internal_token: str, data_dir: Path, tmp_path: Path
) -> None:
    """SO_REUSEPORT would let a second instance share the port unnoticed: it must fail."""
    port = free_port()
    proc = _start(port, redis_url, internal_token, data_dir)
    try:
        second = subprocess.run(
            [sys.executable, "-m", "hivemind_gateway"],
            env=_env(port, redis_url, internal_token, tmp_path / "second"),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode != 0
        assert "in use" in second.stderr, second.stderr[-2000:]
        assert _listening_sockets(port) == 2  # the first one's workers, untouched
    finally:
        _stop(proc, port)
