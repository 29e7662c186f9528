"""The embedding service: batched sentence embeddings behind the internal token."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from hivemind_common.service_app import base_app, mark_started
from hivemind_embedding import __version__
from hivemind_embedding.batcher import MicroBatcher
from hivemind_embedding.encoder import SentenceEncoder, default_model_dir, model_id_for
from hivemind_embedding.router import openai_router, router
from hivemind_embedding.settings import EmbeddingSettings
from hivemind_embedding.state import EmbeddingState


def create_app(settings: EmbeddingSettings) -> FastAPI:
    """Build the app; the model is loaded (off the loop) in the lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.internal_token = settings.require_internal_token()
        model_dir = settings.embedding_model_dir or default_model_dir()
        model_id = model_id_for(model_dir, settings.embedding_model_id)
        encoder = await asyncio.to_thread(
            SentenceEncoder.load,
            model_dir,
            model_id=model_id,
            device=settings.embedding_device,
            threads=settings.embedding_threads,
            workers=settings.embedding_workers,
            precision=settings.embedding_precision,
            fast_path=settings.embedding_fast_path,
            compile_copy=settings.embedding_compile,
            amx_attention=settings.embedding_amx_attention,
            sub_batch=settings.embedding_sub_batch,
        )
        batcher = MicroBatcher(
            encoder.encode,
            enabled=settings.embedding_batching,
            window_s=settings.embedding_batch_window_ms / 1000.0,
            max_batch=settings.embedding_max_batch,
            # two calls at once where passes run on a pool of workers: one is gathered and
            # tokenized while the other's passes run (the batcher's docstring has the figures)
            calls=2 if encoder.workers > 1 else 1,
        )
        await batcher.start()
        app.state.embedding = EmbeddingState(settings, encoder, batcher)

        async def model_loaded() -> None:
            return None

        app.state.ready_checks["model"] = model_loaded
        mark_started(app)
        try:
            yield
        finally:
            await batcher.close()
            encoder.close()

    app = base_app(service="embedding", lifespan=lifespan, version=__version__)
    app.include_router(router)
    app.include_router(openai_router)
    return app
