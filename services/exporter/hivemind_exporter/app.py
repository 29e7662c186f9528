"""The exporter service's HTTP face (health, readiness, metrics) and its export worker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from hivemind_common.redis_client import connect_redis
from hivemind_common.service_app import base_app, mark_started
from hivemind_exporter import __version__
from hivemind_exporter.settings import ExporterSettings


def create_app(settings: ExporterSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.internal_token = settings.require_internal_token()
        redis = connect_redis(settings.redis_url)
        app.state.redis = redis
        app.state.ready_checks["redis"] = redis.ping
        mark_started(app)
        try:
            yield
        finally:
            await redis.aclose()

    return base_app(service="exporter", lifespan=lifespan, version=__version__)
