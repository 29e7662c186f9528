"""A whole cycle on a tiny model through the worker: stream in, version and export job out."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from trainer_tiny import chats

from hivemind_common import keys
from hivemind_common.job_records import create_job, get_job, update_job
from hivemind_common.jobs import ExportJob, LearningSample, TrainJob
from hivemind_common.model_registry import ModelRegistry, ModelVersion
from hivemind_trainer.settings import TrainerSettings
from hivemind_trainer.worker import TrainerWorker

pytestmark = pytest.mark.slow


def settings(redis_url: str, data_dir: Path, base: Path, **kw: object) -> TrainerSettings:
    return TrainerSettings(
        redis_url=redis_url,
        data_dir=data_dir,
        internal_token="t",
        base_hf_dir=base,
        worker_enabled=False,
        seq_len=512,
        max_steps=4,
        threshold=20,
        min_interval_s=0,
        heldout_fraction=0.2,
        reclaim_idle_ms=0,
        consumer_name="alive",
        general_tolerance=1.0,  # a tiny model's general loss says little; the rule is tested alone
        general_accuracy_tolerance=1.0,
        idle_check=False,  # a busy test machine must not hold cycles back (test_idle.py)
        **kw,
    )


async def feed(redis, n: int, offset: int = 0) -> None:
    await redis.hset(keys.tenant_settings("acme"), "share_training", "1")  # acme opted in
    for conv in chats(n, offset=offset):
        sample = LearningSample(tenant="acme", messages=conv, rating=1.0)
        await redis.xadd(keys.learning_stream(), sample.to_fields())


async def test_a_killed_workers_job_is_reclaimed_and_deployed_once(
    redis_client, redis_url: str, data_dir: Path, trained_tiny_dir: Path
) -> None:
    await feed(redis_client, 30, offset=100)
    worker = TrainerWorker(redis_client, settings(redis_url, data_dir, trained_tiny_dir))
    await worker.ensure_groups()
    assert await worker.lock.acquire()  # a worker steps only as the leader
    job = TrainJob(requested_by="test", reason="manual")
    await create_job(redis_client, job.job_id, requested_by="test")
    await redis_client.xadd(keys.jobs_stream(), job.to_fields())
    # a worker named "dead" takes the job and dies before acknowledging it
    await redis_client.xreadgroup(keys.TRAINER_GROUP, "dead", {keys.jobs_stream(): ">"}, count=1)
    await update_job(redis_client, job.job_id, status="running", stage="train")

    result = await worker.step()
    assert result is not None and result.job_id == job.job_id, result
    assert result.status == "exported", result
    record = await get_job(redis_client, job.job_id)
    assert (record.status, record.stage, record.version) == ("running", "export", result.version)

    exports = await redis_client.xrange(keys.export_stream())
    assert [ExportJob.from_fields(f).version for _, f in exports] == [result.version]
    registry = ModelRegistry(redis_client, data_dir)
    version = await registry.get("default", result.version)
    assert version.status == "ready" and version.job_id == job.job_id
    manifest = json.loads((Path(version.path) / "manifest.json").read_text())
    assert manifest["dataset"]["counts"]["train"] > 0 and manifest["adapter_dir"] == "adapter"
    assert manifest["gate"]["deployable"] and manifest["train"]["validation"]["problems"] == []
    assert (Path(version.path) / "adapter" / "adapter_config.json").is_file()
    assert manifest["metrics"]["heldout_loss"] <= manifest["metrics"]["served_heldout_loss"]

    # the same job delivered again (the worker died after export, before its ack): not re-run
    await redis_client.xadd(keys.jobs_stream(), job.to_fields())
    await redis_client.xreadgroup(keys.TRAINER_GROUP, "dead", {keys.jobs_stream(): ">"}, count=1)
    assert await worker.step() is None
    assert len(await redis_client.xrange(keys.export_stream())) == 1
    pending = await redis_client.xpending(keys.jobs_stream(), keys.TRAINER_GROUP)
    assert pending["pending"] == 0


async def test_the_threshold_starts_a_cycle_and_an_attempt_does_not_repeat_at_once(
    redis_client, redis_url: str, data_dir: Path, trained_tiny_dir: Path
) -> None:
    s = settings(redis_url, data_dir, trained_tiny_dir).model_copy(update={"min_interval_s": 3600})
    worker = TrainerWorker(redis_client, s)
    await worker.ensure_groups()
    assert await worker.lock.acquire()
    await feed(redis_client, 10)
    assert await worker.step() is None  # 10 of 20 samples: nothing starts
    await feed(redis_client, 20, offset=10)
    first = await worker.step()
    assert first is not None and first.status in {"exported", "rejected"}
    await feed(redis_client, 30, offset=200)
    assert await worker.step() is None  # enough samples, but the last attempt was just now
    state = await redis_client.hgetall(keys.learning_state())
    assert int(state["accepted_seq"]) - int(state["trained_seq"]) >= 20


async def test_the_backlog_gauges_follow_the_stream(
    redis_client, redis_url: str, data_dir: Path, trained_tiny_dir: Path
) -> None:
    from hivemind_trainer.metrics import (
        LEARNING_STREAM_LENGTH,
        LEARNING_STREAM_PENDING,
        NEW_SAMPLES,
    )

    worker = TrainerWorker(redis_client, settings(redis_url, data_dir, trained_tiny_dir))
    await worker.ensure_groups()
    assert await worker.lock.acquire()  # a worker steps only as the leader
    await feed(redis_client, 10, offset=300)
    assert await worker.step() is None  # under the threshold: collected, not trained
    state = await redis_client.hgetall(keys.learning_state())
    assert LEARNING_STREAM_LENGTH._value.get() == 10
    assert LEARNING_STREAM_PENDING._value.get() == 0  # every entry was acknowledged
    assert NEW_SAMPLES._value.get() == int(state["accepted_seq"]) - int(state.get("trained_seq", 0))
    assert NEW_SAMPLES._value.get() > 0


async def test_a_trainer_whose_fencing_token_went_stale_registers_and_queues_nothing(
    redis_client, redis_url: str, data_dir: Path, trained_tiny_dir: Path
) -> None:
    from hivemind_trainer.cycle import run_cycle
    from hivemind_trainer.orchestrator import LeaderLock, LeadershipLost

    await feed(redis_client, 30, offset=400)
    s = settings(redis_url, data_dir, trained_tiny_dir)
    lease = LeaderLock(redis_client, "old-leader")
    assert await lease.acquire()
    stolen = {"done": False}

    def progress(step: int, total: int, loss: float | None) -> None:
        stolen["done"] = True  # training runs; the lease changes hands meanwhile

    await redis_client.delete(keys.leader_lock("trainer"))  # it expired (a long pause, say)
    assert await LeaderLock(redis_client, "new-leader").acquire()
    job = TrainJob(requested_by="test", reason="manual")
    with pytest.raises(LeadershipLost):
        await run_cycle(redis_client, s, job.job_id, progress=progress, lease=lease)
    assert stolen["done"]
    assert await ModelRegistry(redis_client, data_dir).list("default") == []
    assert await redis_client.xlen(keys.export_stream()) == 0
    assert not list((data_dir / "models" / "default").glob("v*"))  # no orphan version folder
    record = await get_job(redis_client, job.job_id)
    assert record.status != "failed"  # the new leader runs it; nothing to overturn


async def test_a_running_job_is_kept_claimed_so_no_other_trainer_reclaims_it(
    redis_client, redis_url: str, data_dir: Path, trained_tiny_dir: Path
) -> None:
    await feed(redis_client, 30, offset=500)
    s = settings(redis_url, data_dir, trained_tiny_dir)
    s = s.model_copy(update={"reclaim_idle_ms": 1500, "max_steps": 300})
    busy = TrainerWorker(redis_client, s.model_copy(update={"consumer_name": "busy"}))
    other = TrainerWorker(redis_client, s.model_copy(update={"consumer_name": "other"}))
    await busy.ensure_groups()
    assert await busy.lock.acquire()
    # many small steps: the run lasts several reclaim idle limits
    job = TrainJob(
        requested_by="test", reason="manual", overrides={"epochs": "100", "batch_size": "1"}
    )
    await create_job(redis_client, job.job_id, requested_by="test")
    await redis_client.xadd(keys.jobs_stream(), job.to_fields())
    nxt = await busy.next_job()
    assert nxt is not None
    task = asyncio.create_task(busy.handle_job(*nxt))
    taken = []
    started = time.monotonic()
    while not task.done():  # poll the whole run, far longer than the idle limit
        got = await other.next_job()
        if got is not None:
            taken.append(got[0])
        await asyncio.wait({task}, timeout=0.5)
    result = task.result()
    assert result is not None and result.status in {"exported", "rejected"}, result
    assert time.monotonic() - started > 3 * 1.5  # several reclaim idle limits
    assert taken == []


async def test_rejected_versions_do_not_pile_up_only_the_newest_is_kept(
    redis_client, redis_url: str, data_dir: Path, trained_tiny_dir: Path
) -> None:
    from hivemind_trainer.cycle import run_cycle

    s = settings(redis_url, data_dir, trained_tiny_dir).model_copy(
        update={"general_tolerance": -0.99}  # no candidate can pass: every cycle is rejected
    )
    results = []
    for offset in (1400, 1500, 1600):
        await feed(redis_client, 30, offset=offset)
        results.append(await run_cycle(redis_client, s))
    assert [r.status for r in results] == ["rejected"] * 3
    kept = [mv.version for mv in await ModelRegistry(redis_client, data_dir).list("default")]
    assert kept == [results[-1].version]
    folders = sorted(p.name for p in (data_dir / "models" / "default").glob("v*"))
    assert folders == [results[-1].version]


async def test_imports_a_foundation_run_took_do_not_start_cycle_after_cycle(
    redis_client, redis_url: str, data_dir: Path, trained_tiny_dir: Path, tmp_path: Path
) -> None:
    """After a foundation run the imports still counted as new samples: each pass started a
    cycle that found nothing to train, returned before it noted the attempt, and the worker
    started the next one at once, in a tight loop writing a job record each time."""
    from typer.testing import CliRunner

    from hivemind_cli.main import app

    lines = [json.dumps({"instruction": f"Add {i} to x.", "output": f"x + {i}"}) for i in range(30)]
    path = tmp_path / "imports.jsonl"
    path.write_text("\n".join(lines) + "\n")
    env = {"HIVEMIND_REDIS_URL": redis_url, "HIVEMIND_DATA_DIR": str(data_dir),
           "HIVEMIND_BASE_HF_DIR": str(trained_tiny_dir)}  # fmt: skip
    done = await asyncio.to_thread(
        CliRunner().invoke, app, ["learn", "import", str(path), "--json"], env=env
    )
    assert done.exit_code == 0, done.output
    s = settings(redis_url, data_dir, trained_tiny_dir).model_copy(update={"min_interval_s": 3600})
    worker = TrainerWorker(redis_client, s)
    await worker.ensure_groups()
    assert await worker.lock.acquire()
    await worker.collector.collect_once(block_ms=None)
    state = keys.learning_state()
    accepted = int(await redis_client.hget(state, "accepted_seq") or 0)
    assert accepted >= 20
    await redis_client.hset(state, "foundation_seq", accepted)  # a foundation run took them all
    first = await worker.step()
    assert first is not None and first.status == "skipped"
    after = await redis_client.hgetall(state)
    assert float(after["last_attempt_at"]) > 0 and int(after["trained_seq"]) == accepted
    assert await worker.step() is None  # nothing new: no second cycle, no second job


async def test_a_job_taken_over_after_its_version_was_registered_marks_progress(
    redis_client, redis_url: str, data_dir: Path, trained_tiny_dir: Path
) -> None:
    """A leader killed between registering a version and writing the progress left
    trained_seq behind; the job taken over queued the export but the next cycle trained the
    same samples again."""
    from hivemind_trainer.cycle import run_cycle

    s = settings(redis_url, data_dir, trained_tiny_dir)
    registry = ModelRegistry(redis_client, data_dir)
    mv = ModelVersion(
        name="default", version="v-taken", status="ready", job_id="job-taken",
        dataset={"seq_from": 1, "seq_to": 25},
    )  # fmt: skip
    registry.version_dir("default", "v-taken").mkdir(parents=True)
    await registry.register(mv)
    result = await run_cycle(redis_client, s, "job-taken")
    assert (result.status, result.version) == ("exported", "v-taken")
    assert int(await redis_client.hget(keys.learning_state(), "trained_seq")) == 25
    queued = await redis_client.xrange(keys.export_stream())
    assert [ExportJob.from_fields(f).version for _, f in queued] == ["v-taken"]


async def test_a_trainer_stopped_mid_cycle_leaves_its_job_pending_for_a_reclaim(
    redis_client, redis_url: str, data_dir: Path, trained_tiny_dir: Path, monkeypatch
) -> None:
    """A stop (SIGTERM: the service cancels its worker) mid-training acknowledged the job, so
    no trainer ever ran it again and its record said "running" for 30 days."""
    import threading

    from hivemind_trainer import cycle

    training, stop = threading.Event(), threading.Event()

    def train_and_gate(**_: object) -> None:  # training that runs until the test ends
        training.set()
        stop.wait(120)
        raise RuntimeError("the test is over")

    monkeypatch.setattr(cycle, "train_and_gate", train_and_gate)
    await feed(redis_client, 30, offset=1700)
    s = settings(redis_url, data_dir, trained_tiny_dir)
    worker = TrainerWorker(redis_client, s.model_copy(update={"consumer_name": "stopping"}))
    await worker.ensure_groups()
    assert await worker.lock.acquire()
    job = TrainJob(requested_by="test", reason="manual")
    await create_job(redis_client, job.job_id, requested_by="test")
    await redis_client.xadd(keys.jobs_stream(), job.to_fields())
    nxt = await worker.next_job()
    assert nxt is not None
    task = asyncio.create_task(worker.handle_job(*nxt))
    try:
        deadline = time.monotonic() + 120
        while not training.is_set():
            record = await get_job(redis_client, job.job_id)
            assert time.monotonic() < deadline and not task.done(), record
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        stop.set()
    pending = await redis_client.xpending(keys.jobs_stream(), keys.TRAINER_GROUP)
    assert int(pending["pending"]) == 1  # not acknowledged: the next trainer reclaims it
    assert (await get_job(redis_client, job.job_id)).status == "running"
