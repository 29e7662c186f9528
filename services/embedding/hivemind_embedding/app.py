"""The embedding service: batched sentence embeddings behind the internal token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from hivemind_common.service_app import base_app, mark_started
from hivemind_embedding import __version__
from hivemind_embedding.settings import EmbeddingSettings


def create_app(settings: EmbeddingSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.internal_token = settings.require_internal_token()
        mark_started(app)
        yield

    return base_app(service="embedding", lifespan=lifespan, version=__version__)
