"""The trainer service: health, readiness and metrics; its work runs from Redis Streams."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from hivemind_common.redis import connect_redis
from hivemind_common.scrape_metrics import disk_sampler
from hivemind_common.service_app import base_app, mark_started
from hivemind_trainer import __version__
from hivemind_trainer.settings import TrainerSettings
from hivemind_trainer.state import TrainerState
from hivemind_trainer.worker import TrainerWorker


def create_app(settings: TrainerSettings) -> FastAPI:
    """A trainer app; with ``worker_enabled`` its lifespan runs the worker as a kept task."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.internal_token = settings.require_internal_token()
        redis = connect_redis(settings.redis_url)
        app.state.ready_checks["redis"] = redis.ping
        app.state.scrape_samplers.append(disk_sampler(settings.data_dir))
        stop = asyncio.Event()
        tasks: set[asyncio.Task[None]] = set()
        state = TrainerState(settings, redis)
        app.state.trainer = state
        if settings.worker_enabled:
            worker = state.worker = TrainerWorker(redis, settings)
            tasks.add(asyncio.create_task(worker.run(stop), name="trainer-worker"))
        mark_started(app)
        try:
            yield
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await redis.aclose()

    return base_app(service="trainer", lifespan=lifespan, version=__version__)
