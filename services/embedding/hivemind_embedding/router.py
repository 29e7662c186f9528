"""Routes: POST /embed, POST /v1/embeddings and GET /info, behind the internal token."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Depends
from fastapi.responses import Response

from hivemind_common.auth import require_internal
from hivemind_common.errors import Invalid, TooLarge
from hivemind_common.text import text_problem
from hivemind_common.wire import OpenAIRoute
from hivemind_embedding.schemas import (
    EmbedRequest,
    EmbedResponse,
    ModelInfo,
    OpenAIEmbeddingRequest,
    OpenAIEmbeddingResponse,
)
from hivemind_embedding.settings import EmbeddingSettings
from hivemind_embedding.state import EmbeddingDep

router = APIRouter(dependencies=[Depends(require_internal)])
# OpenAI's embeddings endpoint answers errors in OpenAI's envelope
openai_router = APIRouter(dependencies=[Depends(require_internal)], route_class=OpenAIRoute)
_JSON = "application/json"


def check_texts(texts: list[str], settings: EmbeddingSettings, *, param: str) -> None:
    """Enforce the limits before any work: count, per-text and total characters, no empty text."""
    if not texts:
        raise Invalid("at least one text is required", param=param)
    if len(texts) > settings.embedding_max_texts:
        raise TooLarge(
            f"{len(texts)} texts in one request; the limit is {settings.embedding_max_texts}",
            param=param,
        )
    total = 0
    for i, text in enumerate(texts):
        if not text.strip():
            raise Invalid(f"text {i} is empty", param=param)
        if len(text) > settings.embedding_max_chars:
            raise TooLarge(
                f"text {i} has {len(text)} characters; the limit is {settings.embedding_max_chars}",
                param=param,
            )
        if (problem := text_problem(text)) is not None:  # the one text rule
            raise Invalid(f"text {i} {problem}", param=param)
        total += len(text)
    if total > settings.embedding_max_total_chars:
        raise TooLarge(
            f"{total} characters in one request; the limit is {settings.embedding_max_total_chars}",
            param=param,
        )


def _json(body: dict[str, Any]) -> Response:
    """Serialise straight from numpy with orjson. The declared ``response_model`` still
    documents the shape; validating and re-encoding hundreds of floats per vector through
    pydantic cost more CPU per request than a batched encode spends per text."""
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), media_type=_JSON)


@router.post("/embed", response_model=EmbedResponse)
async def embed(body: EmbedRequest, state: EmbeddingDep) -> Response:
    """Unit-length vectors for ``texts``, named by the model that made them."""
    check_texts(body.texts, state.settings, param="texts")
    rows = await state.batcher.embed(body.texts)
    encoder = state.encoder
    return _json(
        {
            "embeddings": np.ascontiguousarray(rows, dtype=np.float32),
            "dimensions": encoder.dimensions,
            "model": encoder.model_id,
        }
    )


@openai_router.post("/v1/embeddings", response_model=OpenAIEmbeddingResponse)
async def openai_embeddings(body: OpenAIEmbeddingRequest, state: EmbeddingDep) -> Response:
    """OpenAI's embeddings endpoint; ``model`` is accepted and the served model is named back."""
    encoder = state.encoder
    texts = [body.input] if isinstance(body.input, str) else body.input
    check_texts(texts, state.settings, param="input")
    if body.dimensions is not None and body.dimensions != encoder.dimensions:
        raise Invalid(
            f"this model makes {encoder.dimensions}-dimensional vectors; "
            f"dimensions={body.dimensions} is not supported",
            param="dimensions",
        )
    rows = np.ascontiguousarray(await state.batcher.embed(texts), dtype=np.float32)
    # under the encoder's tokenizer lock (count_tokens), on an encoder thread: the tokenizer
    # keeps its padding settings on itself, and a count on another thread while a batch
    # encoded turned padding off under it (the batch failed, and the traced fast path was
    # switched off for good)
    tokens = await state.batcher.on_encoder_thread(encoder.count_tokens, texts)
    data: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        vec: np.ndarray | str
        if body.encoding_format == "base64":
            vec = base64.b64encode(row.astype("<f4").tobytes()).decode()
        else:
            vec = row
        data.append({"object": "embedding", "index": i, "embedding": vec})
    return _json(
        {
            "object": "list",
            "data": data,
            "model": encoder.model_id,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


@router.get("/info", response_model=ModelInfo)
async def info(state: EmbeddingDep) -> ModelInfo:
    """The served model's id and dimensions, and the limits callers must respect."""
    settings, encoder, batcher = state.settings, state.encoder, state.batcher
    return ModelInfo(
        model=encoder.model_id,
        dimensions=encoder.dimensions,
        batching=batcher.enabled,
        precision=encoder.precision,
        fast_path=encoder.fast_path,
        compiled=encoder.compiled,
        compile=encoder.compile_state,
        attention=encoder.attention,
        workers=encoder.workers,
        max_texts=settings.embedding_max_texts,
        max_chars=settings.embedding_max_chars,
        batches=batcher.batches,
        texts=batcher.texts,
    )
