"""Poison jobs end: a job whose work keeps killing its worker goes to the dead-letter list."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hivemind_cli.main import app
from hivemind_common import keys
from hivemind_common.dead_letters import count_start
from hivemind_common.job_records import create_job, get_job, update_job
from hivemind_common.jobs import TrainJob
from hivemind_trainer.settings import TrainerSettings
from hivemind_trainer.worker import TrainerWorker

pytestmark = pytest.mark.slow


async def test_a_job_that_killed_its_worker_three_times_is_buried_and_shown_in_learn_status(
    redis_client, redis_url: str, data_dir: Path
) -> None:
    settings = TrainerSettings(
        redis_url=redis_url,
        data_dir=data_dir,
        internal_token="t",
        worker_enabled=False,
        reclaim_idle_ms=0,
        consumer_name="survivor",
        max_attempts=3,
    )
    worker = TrainerWorker(redis_client, settings)
    await worker.ensure_groups()
    assert await worker.lock.acquire()
    job = TrainJob(requested_by="test", reason="manual")
    await create_job(redis_client, job.job_id, requested_by="test")
    await redis_client.xadd(keys.jobs_stream(), job.to_fields())
    for dead in ("w1", "w2", "w3"):  # three workers took it, started it, and were killed
        await redis_client.xautoclaim(
            keys.jobs_stream(), keys.TRAINER_GROUP, dead, min_idle_time=0, start_id="0-0"
        )
        await redis_client.xreadgroup(keys.TRAINER_GROUP, dead, {keys.jobs_stream(): ">"}, count=1)
        await count_start(redis_client, job.job_id, "train")
        await update_job(redis_client, job.job_id, status="running", stage="train")

    assert await worker.step() is None  # the fourth start is not run
    record = await get_job(redis_client, job.job_id)
    assert record.status == "failed" and "dead-letter" in (record.error or "")
    pending = await redis_client.xpending(keys.jobs_stream(), keys.TRAINER_GROUP)
    assert pending["pending"] == 0
    assert await redis_client.xlen(keys.export_stream()) == 0

    env = {"HIVEMIND_REDIS_URL": redis_url, "HIVEMIND_DATA_DIR": str(data_dir)}
    runner = CliRunner()
    shown = await asyncio.to_thread(runner.invoke, app, ["learn", "status", "--json"], env=env)
    assert shown.exit_code == 0, shown.output
    letters = json.loads(shown.output)["dead_letters"]
    assert [(d["job_id"], d["kind"], d["attempts"], d["stage"]) for d in letters] == [
        (job.job_id, "train", 3, "train")
    ]
    human = await asyncio.to_thread(runner.invoke, app, ["learn", "status"], env=env)
    assert human.exit_code == 0 and job.job_id in human.output and "given up" in human.output


async def test_out_of_memory_is_retried_once_at_half_the_batch_then_fails_with_a_clear_error(
    redis_client, redis_url: str, data_dir: Path, trained_tiny_dir: Path
) -> None:
    import torch
    from test_cycle_worker import feed, settings

    from hivemind_trainer.cycle import run_cycle

    s = settings(redis_url, data_dir, trained_tiny_dir)
    batches: list[int] = []

    def oom_once(step: int, total: int, loss: float | None) -> None:
        if not batches:
            batches.append(step)
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")

    await feed(redis_client, 30, offset=700)
    first = await run_cycle(redis_client, s, overrides={"batch_size": "4"}, progress=oom_once)
    assert first.status in {"exported", "rejected"}, first
    assert first.train["oom_retry"] == {"from_batch_size": 4, "batch_size": 2}
    assert first.train["batch_size"] == 2

    def oom_always(step: int, total: int, loss: float | None) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory (injected)")

    await feed(redis_client, 30, offset=800)
    second = await run_cycle(redis_client, s, overrides={"batch_size": "4"}, progress=oom_always)
    assert second.status == "failed"
    assert "out of memory at batch size 2" in (second.error or "")
