"""The exporter service: its lifespan starts the worker, which picks jobs off the stream."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from exporter.exporter_tiny import TinyModel, write_version

from hivemind_common import keys
from hivemind_common.job_records import create_job, get_job
from hivemind_common.jobs import ExportJob
from hivemind_common.model_registry import ModelRegistry, ModelVersion
from hivemind_common.redis import connect_redis
from hivemind_exporter.app import create_app
from hivemind_exporter.settings import ExporterSettings
from support.servers import serve_app
from support.waiting import wait_until


@pytest.mark.parametrize("tiny", ["llama"], indirect=True)
def test_the_running_service_exports_a_queued_job_and_reports_metrics(
    redis_url: str, internal_token: str, data_dir: Path, tiny: TinyModel
) -> None:
    async def queue() -> None:
        redis = connect_redis(redis_url)
        try:
            reg = ModelRegistry(redis, data_dir)
            write_version(reg, tiny, "v1")
            await reg.register(ModelVersion(name="default", version="v1"))
            await create_job(redis, "job1")
            await redis.xadd(
                keys.export_stream(),
                ExportJob(job_id="job1", model="default", version="v1").to_fields(),
            )
        finally:
            await redis.aclose()

    async def status() -> str:
        redis = connect_redis(redis_url)
        try:
            return (await get_job(redis, "job1")).status
        finally:
            await redis.aclose()

    asyncio.run(queue())
    settings = ExporterSettings(
        redis_url=redis_url,
        data_dir=data_dir,
        internal_token=internal_token,
        deploy=False,
        require_chat_stop=False,
        poll_block_ms=200,
        port=None,
    )
    with serve_app(create_app(settings), ready_path="/readyz") as url:
        wait_until(
            lambda: asyncio.run(status()) in ("succeeded", "failed"), timeout=240, what="export"
        )
        assert asyncio.run(status()) == "succeeded"
        metrics = httpx.get(f"{url}/metrics", timeout=5).text
        assert 'hivemind_exporter_jobs_total{result="exported"}' in metrics
        assert "hivemind_exporter_stage_seconds_bucket" in metrics
