"""Bodies of the sessions and memories API."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from hivemind_common.text import InputModel
from hivemind_gateway.validation import Identifier, Metadata, Query, Tags, clean_text

MAX_FILES = 200
MAX_CONTEXT_CHARS = 200_000  # a session's working context: a long prompt's worth, not a store

Text = Annotated[str, StringConstraints(strict=True, min_length=1), AfterValidator(clean_text)]
ShortText = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=4096), AfterValidator(clean_text)
]


Files = Annotated[list[ShortText], Field(max_length=MAX_FILES)]


Context = Annotated[Text, Field(max_length=MAX_CONTEXT_CHARS)]


class SessionCreate(InputModel):
    model_config = ConfigDict(extra="forbid")

    id: Identifier | None = None
    context: Context | None = None
    files: Files = Field(default_factory=list)
    task: ShortText | None = None
    metadata: Metadata = Field(default_factory=dict)


class SessionContext(InputModel):
    """``PUT /v1/sessions/{id}/context``: replaces the working context (creates the session)."""

    model_config = ConfigDict(extra="forbid")

    context: Context
    files: Files | None = None
    task: ShortText | None = None


class SessionPublic(BaseModel):
    id: str
    # a listing asked with ``preview_chars`` cuts this to its start; ``context_chars`` is the
    # whole context's length either way
    context: str | None
    context_chars: int = 0
    files: list[str]
    task: str | None
    metadata: dict[str, Any]
    created_at: float
    updated_at: float
    expires_in: int
    memories: int = 0


class SessionsPublic(BaseModel):
    data: list[SessionPublic]
    count: int
    next_cursor: str | None = None


class MemoryCreate(InputModel):
    model_config = ConfigDict(extra="forbid")

    # chosen by the client so a retried write cannot duplicate (the same id and body again
    # answers the stored memory; the same id with another body is a 409)
    id: Identifier | None = None
    text: Text
    session_id: Identifier | None = None
    tags: Tags = Field(default_factory=list)
    metadata: Metadata = Field(default_factory=dict)


class MemoryPublic(BaseModel):
    id: str
    text: str
    session_id: str | None
    tags: list[str]
    metadata: dict[str, Any]
    created_at: float


class MemoriesPublic(BaseModel):
    data: list[MemoryPublic]
    count: int
    next_cursor: str | None = None


class MemorySearch(InputModel):
    model_config = ConfigDict(extra="forbid")

    query: Query
    top_k: int = Field(default=5, ge=1, le=100, strict=True)
    session_id: Identifier | None = None
    tags: Tags = Field(default_factory=list)


class MemoryHit(MemoryPublic):
    score: float


class MemoryHits(BaseModel):
    data: list[MemoryHit]
    method: str


MAX_BATCH_ITEMS = 500


class MemoriesBatch(BaseModel):
    """``POST /v1/memories/batch``: each item is a ``POST /v1/memories`` body, checked alone."""

    model_config = ConfigDict(extra="forbid")

    memories: list[Any] = Field(max_length=MAX_BATCH_ITEMS)


class BatchItemResult(BaseModel):
    """One item's outcome, in the order sent: its new id, or the problem that refused it."""

    index: int
    id: str | None = None
    error: dict[str, Any] | None = None


class MemoriesBatchResult(BaseModel):
    results: list[BatchItemResult]
    stored: int
    failed: int
