"""The inference service: llama.cpp models behind an OpenAI-compatible API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from hivemind_common.service_app import base_app, mark_started
from hivemind_inference import __version__
from hivemind_inference.settings import InferenceSettings


def create_app(settings: InferenceSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.internal_token = settings.require_internal_token()
        mark_started(app)
        yield

    return base_app(service="inference", lifespan=lifespan, version=__version__)
