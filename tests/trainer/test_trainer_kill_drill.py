"""Kill drill: kill -9 a trainer in the middle of training; another trainer finishes the job once.

The trainers are real processes (``python -m hivemind_trainer``). The killed one held the leader
lease and the job's stream entry; the survivor leads once the lease expires, reclaims the entry
and runs the job to one registered version and one export job. Bounded by deadlines throughout.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import redis as sync_redis
from test_cycle_worker import feed

from hivemind_common import keys
from hivemind_common.job_records import create_job
from hivemind_common.jobs import ExportJob, TrainJob
from support.waiting import free_port, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _start(env: dict[str, str], name: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hivemind_trainer"],
        env={**env, "HIVEMIND_PORT": str(port), "HIVEMIND_CONSUMER_NAME": name},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, f"trainer {name} exited"
        return httpx.get(url + "/healthz", timeout=2.0).status_code == 200

    wait_until(up, timeout=120, interval=0.1, what=f"trainer {name}")
    return proc, url


async def test_kill_9_during_training_the_job_ends_once_with_one_version(
    redis_client, redis_url: str, data_dir: Path, trained_tiny_dir: Path
) -> None:
    await feed(redis_client, 30, offset=1200)
    job = TrainJob(
        requested_by="test", reason="drill", overrides={"epochs": "200", "batch_size": "1"}
    )
    await create_job(redis_client, job.job_id, requested_by="test")
    await redis_client.xadd(keys.jobs_stream(), job.to_fields())
    env = {
        **os.environ,
        "HIVEMIND_REDIS_URL": redis_url,
        "HIVEMIND_DATA_DIR": str(data_dir),
        "HIVEMIND_INTERNAL_TOKEN": "drill-token",
        "HIVEMIND_BASE_HF_DIR": str(trained_tiny_dir),
        "HIVEMIND_SEQ_LEN": "512",
        "HIVEMIND_MAX_STEPS": "400",
        "HIVEMIND_THREADS": "1",
        "HIVEMIND_RECLAIM_IDLE_MS": "2000",
        "HIVEMIND_CHECK_INTERVAL_S": "0.5",
        "HIVEMIND_THRESHOLD": "100000",
        "HIVEMIND_HELDOUT_FRACTION": "0.2",
        "HIVEMIND_GENERAL_TOLERANCE": "1.0",
        "HIVEMIND_IDLE_CHECK": "false",
        "HIVEMIND_LOG_LEVEL": "WARNING",
    }
    r = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    first, _ = _start(env, "first")
    survivor = None
    try:
        wait_until(
            lambda: r.hget(keys.job(job.job_id), "stage") == "train",
            timeout=180,
            interval=0.05,
            what="training to start",
        )
        first.kill()  # SIGKILL mid-training: no ack, no lease release, no clean-up
        first.wait(timeout=30)
        assert r.get(keys.leader_lock("trainer")) == "first"  # the lease outlives it
        survivor, _ = _start(env, "survivor")
        wait_until(
            lambda: r.hget(keys.job(job.job_id), "stage") == "export",
            timeout=300,
            interval=0.2,
            what="the survivor to finish the job",
        )
    finally:
        for proc in (first, survivor):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
    versions = r.hgetall(keys.model_versions("default"))
    exports = [ExportJob.from_fields(f) for _, f in r.xrange(keys.export_stream())]
    assert len(versions) == 1 and [e.version for e in exports] == list(versions)
    assert int(r.hget(keys.job(job.job_id), "attempts:train") or 0) == 2
    assert r.xpending(keys.jobs_stream(), keys.TRAINER_GROUP)["pending"] == 0
    folders = [p.name for p in (data_dir / "models" / "default").glob("v*")]
    assert folders == list(versions)  # the killed run left no half-written version
