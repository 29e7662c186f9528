"""Kill drill: kill -9 the exporter in the middle of an export; a restarted one finishes it.

The exporter is a real process (``python -m hivemind_exporter``, deploy off). The killed one held
the job's stream entry; the restarted one reclaims it, sweeps what the kill left and exports the
version once, validated, with no temp file left anywhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import redis as sync_redis
from exporter.exporter_tiny import TinyModel, write_version

from hivemind_common import keys
from hivemind_common.job_records import create_job
from hivemind_common.jobs import ExportJob
from hivemind_common.model_registry import ModelRegistry, ModelVersion
from support.waiting import free_port, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _start(env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hivemind_exporter"],
        env={**env, "HIVEMIND_PORT": str(port), "HIVEMIND_CONSUMER_NAME": name},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def up() -> bool:
        assert proc.poll() is None, f"exporter {name} exited"
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2.0).status_code == 200

    wait_until(up, timeout=120, interval=0.1, what=f"exporter {name}")
    return proc


@pytest.mark.parametrize("tiny", ["llama"], indirect=True)
async def test_kill_9_during_an_export_a_restarted_exporter_finishes_it_once(
    tiny: TinyModel, redis_client, redis_url: str, data_dir: Path
) -> None:
    registry = ModelRegistry(redis_client, data_dir)
    write_version(registry, tiny, "v1")
    await registry.register(ModelVersion(name="default", version="v1"))
    await create_job(redis_client, "job-drill", model="default")
    job = ExportJob(job_id="job-drill", model="default", version="v1", quant="Q8_0")
    await redis_client.xadd(keys.export_stream(), job.to_fields())
    env = {
        **os.environ,
        "HIVEMIND_REDIS_URL": redis_url,
        "HIVEMIND_DATA_DIR": str(data_dir),
        "HIVEMIND_INTERNAL_TOKEN": "drill-token",
        "HIVEMIND_DEPLOY": "false",
        "HIVEMIND_REQUIRE_CHAT_STOP": "false",
        "HIVEMIND_RECLAIM_IDLE_MS": "2000",
        "HIVEMIND_POLL_BLOCK_MS": "200",
        "HIVEMIND_THREADS": "1",
        "HIVEMIND_LOG_LEVEL": "WARNING",
    }
    r = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    first = _start(env, "first")
    second = None
    try:
        wait_until(
            lambda: r.hget(keys.job("job-drill"), "stage") == "export",
            timeout=120,
            interval=0.02,
            what="the export to start",
        )
        first.kill()  # SIGKILL mid-export
        first.wait(timeout=30)
        assert r.hget(keys.job("job-drill"), "status") == "running"
        second = _start(env, "second")
        wait_until(
            lambda: r.hget(keys.job("job-drill"), "status") in ("succeeded", "failed"),
            timeout=300,
            interval=0.2,
            what="the restarted exporter to finish",
        )
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
    assert r.hget(keys.job("job-drill"), "status") == "succeeded", r.hgetall(keys.job("job-drill"))
    assert int(r.hget(keys.job("job-drill"), "attempts:export") or 0) == 2
    manifest = registry.read_manifest("default", "v1")
    assert manifest["export"]["validation"]["passed"]
    assert (registry.version_dir("default", "v1") / "model-Q8_0.gguf").is_file()
    assert not [p for p in (data_dir / "models").rglob("*") if p.name.endswith(".tmp")]
    assert r.xpending(keys.export_stream(), keys.EXPORTER_GROUP)["pending"] == 0
