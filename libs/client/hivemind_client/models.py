"""Typed answers of the native API. Fields the gateway adds later are kept, not refused."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class Fact(_Model):
    key: str
    value: str
    tags: list[str] = Field(default_factory=list)
    created_at: float = 0.0
    updated_at: float = 0.0


class FactPage(_Model):
    data: list[Fact]
    count: int
    next_cursor: str | None = None


class FactHit(_Model):
    key: str
    value: str
    tags: list[str] = Field(default_factory=list)
    score: float


class FactHits(_Model):
    data: list[FactHit]
    method: str = ""


class Memory(_Model):
    id: str
    text: str
    session_id: str | None = None
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: float = 0.0


class MemoryPage(_Model):
    data: list[Memory]
    count: int
    next_cursor: str | None = None


class MemoryHit(Memory):
    score: float


class MemoryHits(_Model):
    data: list[MemoryHit]
    method: str = ""


class Session(_Model):
    id: str
    context: str | None = None
    context_chars: int = 0  # the whole context's length (a listing may give only its start)
    files: list[str] = Field(default_factory=list)
    task: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0
    expires_in: int = 0
    memories: int = 0


class SessionPage(_Model):
    data: list[Session]
    count: int
    next_cursor: str | None = None


class DocResult(_Model):
    id: str
    collection: str
    source: str
    status: Literal["created", "updated", "unchanged"]
    chunks: int
    tokens: int
    embedded_later: int = 0


class DocsWritten(_Model):
    data: list[DocResult]
    chunks: int
    pending_vectors: int = 0


class Doc(_Model):
    id: str
    collection: str
    source: str
    hash: str
    type: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    chunks: int = 0
    tokens: int = 0
    links: list[str] = Field(default_factory=list)
    created_at: float = 0.0
    updated_at: float = 0.0


class DocPage(_Model):
    data: list[Doc]
    count: int
    next_cursor: str | None = None


class DocPart(_Model):
    id: str
    text: str
    lines: tuple[int, int]
    heading: str = ""


class DocDetail(Doc):
    parts: list[DocPart] = Field(default_factory=list)


class DocHit(_Model):
    id: str
    doc_id: str
    collection: str
    source: str
    lines: tuple[int, int]
    heading: str = ""
    text: str
    score: float
    cite: str
    via: str | None = None


class DocHits(_Model):
    data: list[DocHit]
    neighbours: list[DocHit] = Field(default_factory=list)
    method: str = ""


class Tokenized(_Model):
    model: str
    count: int
    ids: list[int] | None = None


class ChunkOut(_Model):
    text: str
    lines: tuple[int, int]
    heading: str = ""
    tokens: int


class Chunked(_Model):
    model: str
    type: str
    data: list[ChunkOut]


class RagItem(_Model):
    kind: str
    key: str
    score: float
    pinned: bool = False


class RagContext(_Model):
    text: str
    items: list[RagItem] = Field(default_factory=list)
    quality: str = ""
    method: str = ""


class RagStats(_Model):
    counters: dict[str, int] = Field(default_factory=dict)
    logged: int = 0
    index: dict[str, int] = Field(default_factory=dict)
    embedding_model: str | None = None
    embedding_available: bool = False
    pending_vectors: int = 0


class DocInput(_Model):
    """One document to send in a batch."""

    source: str
    text: str
    type: Literal["markdown", "code", "text"] | None = None
    collection: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
