"""The export worker on a real Redis stream: export, acknowledge, reclaim, never twice."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from exporter.exporter_tiny import TinyModel, write_version

from hivemind_common import keys
from hivemind_common.job_records import create_job, get_job
from hivemind_common.jobs import ExportJob
from hivemind_common.model_registry import ModelRegistry, ModelVersion
from hivemind_exporter.settings import ExporterSettings
from hivemind_exporter.worker import ExportWorker


def _settings(redis_url: str, data_dir: Path, **kw: Any) -> ExporterSettings:
    fields: dict[str, Any] = dict(
        redis_url=redis_url,
        data_dir=data_dir,
        internal_token="t",
        worker_enabled=False,
        deploy=False,
        require_chat_stop=False,  # a random tiny model never says its stop token
        reclaim_idle_ms=0,
        threads=2,
    )
    fields.update(kw)
    return ExporterSettings(**fields)


def _worker(redis_client, settings: ExporterSettings) -> ExportWorker:
    return ExportWorker(redis=redis_client, settings=settings, inference=None)


async def _queue(redis_client, version: str, job_id: str) -> None:
    await create_job(redis_client, job_id, model="default")
    job = ExportJob(job_id=job_id, model="default", version=version)
    await redis_client.xadd(keys.export_stream(), job.to_fields())


async def _pending(redis_client) -> int:
    info = await redis_client.xpending(keys.export_stream(), keys.EXPORTER_GROUP)
    return int(info["pending"])


async def _die_holding_the_job(redis_client, worker: ExportWorker) -> None:
    """A consumer that read the job and died before acknowledging it."""
    await worker.ensure_group()
    read = await redis_client.xreadgroup(
        keys.EXPORTER_GROUP, "dead-worker", {keys.export_stream(): ">"}, count=1
    )
    assert read and read[0][1]


async def test_an_export_job_writes_validated_gguf_files_with_their_sha256(
    redis_client, redis_url: str, data_dir: Path, tiny: TinyModel
) -> None:
    reg = ModelRegistry(redis_client, data_dir)
    write_version(reg, tiny, "v1")
    await reg.register(ModelVersion(name="default", version="v1"))
    await _queue(redis_client, "v1", "job1")
    worker = _worker(redis_client, _settings(redis_url, data_dir))

    outcomes = await worker.run_once(block_ms=100)

    assert [o.result for o in outcomes] == ["exported"], outcomes
    manifest = reg.read_manifest("default", "v1")
    for name in ("adapter.gguf", "model-f16.gguf", "model-Q5_K_M.gguf", "notes.json"):
        assert len(manifest["files"][name]) == 64
    assert manifest["export"]["validation"]["passed"] is True
    assert manifest["export"]["validation"]["adapter"]["top1_agreement"] >= 0.98
    assert manifest["export"]["validation"]["f16"]["top1_agreement"] >= 0.98
    quant_file = reg.version_dir("default", "v1") / "model-Q5_K_M.gguf"
    assert manifest["serve"] == {"gguf": str(quant_file), "lora": None}
    assert (await reg.get("default", "v1")).files == manifest["files"]
    job = await get_job(redis_client, "job1")
    assert (job.status, job.stage) == ("succeeded", "done")
    assert await _pending(redis_client) == 0


@pytest.mark.parametrize("tiny", ["llama"], indirect=True)
async def test_a_killed_workers_job_is_reclaimed_and_exported_once(
    redis_client, redis_url: str, data_dir: Path, tiny: TinyModel
) -> None:
    reg = ModelRegistry(redis_client, data_dir)
    write_version(reg, tiny, "v1")
    await reg.register(ModelVersion(name="default", version="v1"))
    await _queue(redis_client, "v1", "job1")
    worker = _worker(redis_client, _settings(redis_url, data_dir))
    await _die_holding_the_job(redis_client, worker)
    assert await worker.read_new(block_ms=50) == []  # a new read does not see it

    outcomes = await worker.run_once(block_ms=50)

    assert [o.result for o in outcomes] == ["exported"]
    assert await _pending(redis_client) == 0
    assert await worker.run_once(block_ms=50) == []


@pytest.mark.parametrize(
    ("served", "detail"),
    [
        (["v1"], "already serving"),
        # the worker died after deploying v1; before the job was reclaimed v2 replaced it (a
        # promote, or a rollback of a bad v1): the reclaimed job swapped v1 back in
        (["v1", "v2"], "served, now previous"),
    ],
)
async def test_a_reclaimed_job_whose_version_has_served_is_not_deployed_again(
    redis_client, redis_url: str, data_dir: Path, served: list[str], detail: str
) -> None:
    reg = ModelRegistry(redis_client, data_dir)
    for version in served:
        await reg.register(ModelVersion(name="default", version=version))
        await reg.mark_serving("default", version)
    await _queue(redis_client, "v1", "job1")
    settings = _settings(redis_url, data_dir, deploy=True)
    # inference points at a closed port: any deploy attempt would fail the job
    async with httpx.AsyncClient(base_url="http://127.0.0.1:9", timeout=2) as closed:
        worker = ExportWorker(redis=redis_client, settings=settings, inference=closed)
        await _die_holding_the_job(redis_client, worker)
        outcomes = await worker.run_once(block_ms=50)
    assert [(o.result, o.detail) for o in outcomes] == [("skipped", detail)]
    assert (await get_job(redis_client, "job1")).status == "succeeded"
    assert (await reg.pointers("default"))["serving"] == served[-1]
    assert await _pending(redis_client) == 0


@pytest.mark.parametrize("tiny", ["qwen2"], indirect=True)
async def test_an_export_that_fails_validation_marks_the_version_and_job_failed(
    redis_client, redis_url: str, data_dir: Path, tiny: TinyModel
) -> None:
    reg = ModelRegistry(redis_client, data_dir)
    write_version(reg, tiny, "v1")
    await reg.register(ModelVersion(name="default", version="v1"))
    await _queue(redis_client, "v1", "job1")
    settings = _settings(redis_url, data_dir, min_agreement=1.01)  # unreachable on purpose
    worker = _worker(redis_client, settings)

    outcomes = await worker.run_once(block_ms=50)

    assert outcomes[0].result == "failed" and "agreement" in outcomes[0].detail
    version = await reg.get("default", "v1")
    assert version.status == "failed" and "agreement" in (version.error or "")
    assert reg.read_manifest("default", "v1")["export"]["validation"]["passed"] is False
    job = await get_job(redis_client, "job1")
    assert job.status == "failed" and "agreement" in (job.error or "")
    assert await _pending(redis_client) == 0


async def test_a_malformed_payload_is_acknowledged_and_the_worker_goes_on(
    redis_client, redis_url: str, data_dir: Path
) -> None:
    worker = _worker(redis_client, _settings(redis_url, data_dir))
    await worker.ensure_group()
    await redis_client.xadd(keys.export_stream(), {"data": "{not json"})
    outcomes = await worker.run_once(block_ms=50)
    assert [o.result for o in outcomes] == ["failed"]
    assert await _pending(redis_client) == 0


@pytest.mark.parametrize("tiny", ["llama"], indirect=True)
async def test_a_job_being_worked_on_is_not_reclaimed_by_another_worker(
    redis_client, redis_url: str, data_dir: Path, tiny: TinyModel
) -> None:
    reg = ModelRegistry(redis_client, data_dir)
    write_version(reg, tiny, "v1")
    await reg.register(ModelVersion(name="default", version="v1"))
    await _queue(redis_client, "v1", "job1")
    settings = _settings(redis_url, data_dir, reclaim_idle_ms=3_000)
    busy = ExportWorker(redis=redis_client, settings=settings, inference=None, consumer="busy")
    other = ExportWorker(redis=redis_client, settings=settings, inference=None, consumer="other")
    await other.ensure_group()
    task = asyncio.create_task(busy.run_once(block_ms=50))
    taken: list[object] = []
    while not task.done():  # poll for the whole export, far longer than the idle limit
        taken += await other.reclaim()
        await asyncio.wait({task}, timeout=0.5)
    assert [o.result for o in task.result()] == ["exported"]
    assert taken == []


async def test_an_export_that_killed_its_worker_three_times_is_buried_not_run_again(
    redis_client, redis_url: str, data_dir: Path
) -> None:
    from hivemind_common.dead_letters import count_start
    from hivemind_common.job_records import recent_dead_letters

    reg = ModelRegistry(redis_client, data_dir)
    await reg.register(ModelVersion(name="default", version="v1"))
    await _queue(redis_client, "v1", "job-poison")
    worker = _worker(redis_client, _settings(redis_url, data_dir))
    await _die_holding_the_job(redis_client, worker)
    for _ in range(3):  # three exporters started it and were killed
        await count_start(redis_client, "job-poison", "export")

    outcomes = await worker.run_once(block_ms=50)
    assert [o.result for o in outcomes] == ["failed"]
    assert "dead-letter" in outcomes[0].detail
    assert (await get_job(redis_client, "job-poison")).status == "failed"
    assert (await reg.get("default", "v1")).status == "failed"
    assert await _pending(redis_client) == 0
    letters = await recent_dead_letters(redis_client)
    assert [(d["job_id"], d["kind"], d["attempts"]) for d in letters] == [
        ("job-poison", "export", 3)
    ]
