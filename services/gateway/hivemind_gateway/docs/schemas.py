"""Bodies of the reference library API and the tokenizer helpers."""

from __future__ import annotations

import unicodedata
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from hivemind_common.ids import NAME_PATTERN
from hivemind_common.text import InputModel, SafeText, SearchQuery, Text
from hivemind_gateway.validation import Metadata

MAX_SOURCE_CHARS = 1024
MAX_BATCH_DOCS = 256
MAX_METADATA_KEYS = 64

MAX_HELPER_CHARS = 262_144  # /v1/tokenize and /v1/chunk: the embedding service's own request cap

Collection = Annotated[str, StringConstraints(strict=True, pattern=NAME_PATTERN)]


def _plain_source(value: str) -> str:
    """A source shows as a citation: no trailing space (``"a.md "`` is not ``"a.md"``), no line
    or paragraph separators and no format characters (a right-to-left override spoofs it)."""
    if value != value.rstrip():
        raise ValueError("source must not end with whitespace")
    for ch in value:
        if unicodedata.category(ch) in ("Zl", "Zp", "Cf"):
            raise ValueError(f"source must not contain U+{ord(ch):04X}")
    return value


Source = Annotated[
    str,
    StringConstraints(
        strict=True, min_length=1, max_length=MAX_SOURCE_CHARS, pattern=r"^\S[^\r\n\t]*$"
    ),
    AfterValidator(_plain_source),
]
DocKind = Literal["markdown", "code", "text"]


class DocIn(InputModel):
    """One document: its text and where it comes from (a path or a URL-like name)."""

    model_config = ConfigDict(extra="forbid")

    source: Source
    text: SafeText  # the per-deployment limit (settings.max_doc_chars) is checked later
    type: DocKind | None = None  # from the source's extension when absent
    collection: Collection | None = None  # the batch's collection when absent
    metadata: Metadata = Field(default_factory=dict, max_length=MAX_METADATA_KEYS)


class DocsCreate(InputModel):
    """``POST /v1/docs``: one document (``source`` + ``text``) or a batch (``documents``)."""

    model_config = ConfigDict(extra="forbid")

    collection: Collection = "default"
    source: Source | None = None
    text: SafeText | None = None
    type: DocKind | None = None
    metadata: Metadata = Field(default_factory=dict, max_length=MAX_METADATA_KEYS)
    documents: list[DocIn] | None = Field(default=None, min_length=1, max_length=MAX_BATCH_DOCS)
    chunk_tokens: int | None = Field(default=None, strict=True)
    overlap_tokens: int | None = Field(default=None, strict=True)


class DocResult(BaseModel):
    id: str
    collection: str
    source: str
    status: Literal["created", "updated", "unchanged"]
    chunks: int
    tokens: int
    embedded_later: int  # chunks whose vector the worker is making (new text)


class DocsWritten(BaseModel):
    data: list[DocResult]
    chunks: int
    pending_vectors: int  # the tenant's items still waiting for a vector


class DocPublic(BaseModel):
    id: str
    collection: str
    source: str
    hash: str
    type: str
    metadata: dict[str, object]
    chunks: int
    tokens: int
    links: list[str]  # target paths it links to or imports (resolved when a search expands)
    created_at: float
    updated_at: float


class DocsPublic(BaseModel):
    data: list[DocPublic]
    count: int
    next_cursor: str | None = None


class ChunkPublic(BaseModel):
    id: str
    text: str
    lines: tuple[int, int]
    heading: str


class DocDetail(DocPublic):
    parts: list[ChunkPublic]  # its chunks, in order


class DocsSearch(InputModel):
    model_config = ConfigDict(extra="forbid")

    query: SearchQuery
    top_k: int = Field(default=5, ge=1, le=100, strict=True)
    collection: Collection | None = None
    path_prefix: Annotated[str, StringConstraints(max_length=MAX_SOURCE_CHARS)] | None = None
    expand: int = Field(default=0, ge=0, le=1, strict=True)
    min_score: float = Field(default=-1.0, ge=-1.0, le=2.0)
    # one chunk per section (document and heading path), at its best chunk's rank; false lists
    # every matching chunk, the overlapping fragments of one definition or section too
    collapse: bool = Field(default=True, strict=True)


class DocHit(BaseModel):
    id: str  # the chunk's id
    doc_id: str
    collection: str
    source: str
    lines: tuple[int, int]
    heading: str
    text: str
    score: float
    cite: str  # "source:start-end"
    via: str | None = None  # for a neighbour: the id of the hit that links to it


class DocHits(BaseModel):
    data: list[DocHit]
    neighbours: list[DocHit] = Field(default_factory=list)
    method: str


class TokenizeBody(InputModel):
    model_config = ConfigDict(extra="forbid")

    text: Annotated[SafeText, Field(max_length=MAX_HELPER_CHARS)]
    model: Annotated[str, StringConstraints(strict=True, pattern=NAME_PATTERN)] | None = None
    ids: bool = False  # also return the token ids


class Tokenized(BaseModel):
    model: str
    count: int
    ids: list[int] | None = None


class ChunkBody(InputModel):
    model_config = ConfigDict(extra="forbid")

    text: Annotated[Text, Field(max_length=MAX_HELPER_CHARS)]
    # absent: the library's own (HIVEMIND_DOCS_CHUNK_TOKENS / HIVEMIND_DOCS_OVERLAP_TOKENS)
    chunk_tokens: int | None = Field(default=None, strict=True)
    overlap_tokens: int | None = Field(default=None, strict=True)
    type: DocKind | None = None
    source: Source | None = None  # the extension decides the type when ``type`` is absent


class ChunkOut(BaseModel):
    text: str
    lines: tuple[int, int]
    heading: str
    tokens: int


class Chunked(BaseModel):
    model: str
    type: str
    data: list[ChunkOut]
