"""The exporter service's HTTP face (health, readiness, metrics) and its export worker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from hivemind_common.internal_http import internal_client
from hivemind_common.redis import connect_redis
from hivemind_common.service_app import base_app, mark_started
from hivemind_exporter import __version__
from hivemind_exporter.settings import ExporterSettings
from hivemind_exporter.state import ExporterState
from hivemind_exporter.worker import ExportWorker


def create_app(settings: ExporterSettings) -> FastAPI:
    """Build the app; the worker (when enabled) runs as a kept background task."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        token = settings.require_internal_token()
        app.state.internal_token = token
        redis = connect_redis(settings.redis_url)
        app.state.ready_checks["redis"] = redis.ping
        inference = internal_client(
            "inference",
            token=token,
            base_url=settings.inference_url,
            timeout=httpx.Timeout(settings.swap_timeout_s, connect=3.0),
            profile=settings.profile,
        )
        worker = ExportWorker(redis=redis, settings=settings, inference=inference)
        state = ExporterState(settings, redis, inference, worker)
        app.state.exporter = state
        tasks = state.tasks
        if settings.worker_enabled:
            tasks.add(asyncio.create_task(worker.run_forever(), name="export-worker"))
        mark_started(app)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await inference.aclose()
            await redis.aclose()

    return base_app(service="exporter", lifespan=lifespan, version=__version__)
