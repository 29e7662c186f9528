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

from support.gateway import create_api_key
from support.waiting import free_port, wait_until


def _served_requests(base: str) -> float:
    text = httpx.get(base + "/metrics", timeout=10).text
    pattern = r'hivemind_http_requests_total\{[^}]*route="/v1/facts/\{key:path\}"[^}]*\} (\S+)'
    return sum(float(v) for v in re.findall(pattern, text))


def _holders(port: int) -> set[int]:
    out = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True)
    return {int(p) for p in re.findall(r"pid=(\d+)", out.stdout)}


def test_two_workers_share_the_port_report_one_metrics_and_stop_cleanly(
    redis_url: str, internal_token: str, data_dir: Path
) -> None:
    port = free_port()
    env = {
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
    proc = subprocess.Popen([sys.executable, "-m", "hivemind_gateway"], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: len(_holders(port)) == 3, timeout=120, what="a supervisor, 2 workers")
        wait_until(
            lambda: httpx.get(base + "/readyz", timeout=2).status_code == 200,
            timeout=120,
            what="the workers to be ready",
        )
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
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode == 0
    wait_until(lambda: not _holders(port), timeout=30, what="no process left on the port")
