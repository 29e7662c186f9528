"""The inference service: llama.cpp models behind an OpenAI-compatible API, with hot-swap."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

from hivemind_common.redis import connect_redis
from hivemind_common.service_app import base_app, mark_started
from hivemind_inference import __version__
from hivemind_inference.follow_registry import RegistryFollower
from hivemind_inference.registry import LoadedModels
from hivemind_inference.routes_admin import router as admin_router
from hivemind_inference.routes_openai import native_router
from hivemind_inference.routes_openai import router as openai_router
from hivemind_inference.served import ServedVersionPublisher
from hivemind_inference.settings import InferenceSettings
from hivemind_inference.state import InferenceState


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def create_app(settings: InferenceSettings) -> FastAPI:
    """Build the app; models load in the lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            app.state.internal_token = settings.require_internal_token()
            redis = None
            if settings.publish_served_version or settings.follow_registry:
                redis = connect_redis(settings.redis_url)
                stack.push_async_callback(redis.aclose)
            publisher = ServedVersionPublisher(redis if settings.publish_served_version else None)
            registry = LoadedModels(settings, on_swap=publisher)
            stack.push_async_callback(registry.close)
            follower = None
            if settings.follow_registry and redis is not None:
                follower = RegistryFollower(
                    models=registry,
                    redis=redis,
                    data_dir=settings.data_dir,
                    timeout_s=settings.registry_timeout_s,
                )
            names = [spec.name for spec in settings.model_specs()]
            await registry.load_all(await follower.startup_placements(names) if follower else None)
            app.state.inference = InferenceState(settings, registry, follower)
            if follower is not None:
                task = asyncio.create_task(
                    follower.run(settings.reconcile_interval_s), name="registry-follower"
                )
                stack.push_async_callback(_cancel, task)

            async def models_loaded() -> None:
                if not registry.slots:
                    raise RuntimeError("no model loaded")

            app.state.ready_checks["models"] = models_loaded
            mark_started(app)
            yield

    app = base_app(service="inference", lifespan=lifespan, version=__version__)
    app.include_router(openai_router)
    app.include_router(native_router)
    app.include_router(admin_router)
    return app
