"""Request and response bodies of the embedding service."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

# a bound before validation reads every item (HIVEMIND_EMBEDDING_MAX_TEXTS is checked after):
# a million ints once made a million errors, 1.4 GiB and a 95 MiB answer
MAX_INPUTS = 4096


class EmbedRequest(BaseModel):
    """``POST /embed``: plain texts in, unit vectors out."""

    model_config = ConfigDict(extra="forbid")

    texts: list[str] = Field(min_length=1, max_length=MAX_INPUTS)


class EmbedResponse(BaseModel):
    embeddings: list[list[float]]
    dimensions: int
    model: str


class OpenAIEmbeddingRequest(BaseModel):
    """``POST /v1/embeddings``, OpenAI's shape; unknown OpenAI fields (``user``) are accepted."""

    model_config = ConfigDict(extra="allow")

    input: str | Annotated[list[str], Field(max_length=MAX_INPUTS)]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)


class OpenAIEmbedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class OpenAIUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class OpenAIEmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIEmbedding]
    model: str
    usage: OpenAIUsage


class ModelInfo(BaseModel):
    model: str
    dimensions: int
    batching: bool
    precision: str = "float32"
    fast_path: bool = False
    compiled: bool = False  # batches run the compiled copy (it is built after start)
    compile: Literal["off", "building", "on", "failed"] = "off"
    attention: Literal["sdpa", "amx"] = "sdpa"  # the compiled copy's: torch's or AMX tiles
    workers: int = 1  # passes of one call encoded side by side
    max_texts: int
    max_chars: int
    batches: int = 0
    texts: int = 0
