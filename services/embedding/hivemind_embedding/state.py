"""The embedding service's state: one typed object, made once by the lifespan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from hivemind_embedding.batcher import MicroBatcher
from hivemind_embedding.encoder import SentenceEncoder
from hivemind_embedding.settings import EmbeddingSettings


@dataclass(eq=False)
class EmbeddingState:
    """The loaded model and its batcher (``app.state.embedding``)."""

    settings: EmbeddingSettings
    encoder: SentenceEncoder
    batcher: MicroBatcher


async def embedding_state(request: Request) -> EmbeddingState:
    state: EmbeddingState = request.app.state.embedding
    return state


EmbeddingDep = Annotated[EmbeddingState, Depends(embedding_state)]
