"""The ``requests`` section of ``/v1/stats`` counts every worker process of the gateway."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import asyncio, json, multiprocessing, os, sys
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[1]  # before prometheus_client loads
    from hivemind_common.auth import Principal
    from hivemind_common.observability import HTTP_REQUESTS
    from hivemind_gateway.stats.suite import request_stats

    def worker(n, status):
        for _ in range(n):
            HTTP_REQUESTS.labels("gateway", "GET", "/v1/facts", status).inc()

    ctx = multiprocessing.get_context("fork")
    jobs = [ctx.Process(target=worker, args=args) for args in ((3, "2xx"), (2, "5xx"))]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join()
    worker(1, "4xx")  # this process too
    operator = Principal(key_id="k", tenant="t", role="operator")
    print(json.dumps(asyncio.run(request_stats(None, operator))))
    """
)


def test_request_figures_add_up_every_worker_process(tmp_path: Path) -> None:
    shared = tmp_path / "prom"
    shared.mkdir()
    script = tmp_path / "workers.py"
    script.write_text(SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), str(shared)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["total"] == 6
    assert figures["errors_5xx"] == 2 and figures["errors_4xx"] == 1
