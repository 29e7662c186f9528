"""Bodies of the retrieval API, and the context object the chat route injects."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from hivemind_common.text import InputModel
from hivemind_gateway.validation import Identifier, Query

Quality = Literal["good", "weak", "fallback", "miss"]


class RagItem(BaseModel):
    kind: Literal["fact", "memory"]
    key: str
    score: float
    pinned: bool = False


class RagContext(BaseModel):
    """What retrieval injected: the block of text, the items in it, and how sure it was."""

    text: str
    items: list[RagItem]
    quality: Quality
    method: Literal["hybrid", "lexical"] = "hybrid"


class RagQuery(InputModel):
    model_config = ConfigDict(extra="forbid")

    query: Query
    budget_tokens: int = Field(default=512, ge=1, le=32_768, strict=True)
    session_id: Identifier | None = None


class Suggestion(BaseModel):
    topic: str
    queries: int
    examples: list[str]


class Suggestions(BaseModel):
    data: list[Suggestion]
    scanned: int


class RagStats(BaseModel):
    counters: dict[str, int]
    logged: int
    index: dict[str, int]
    embedding_model: str | None
    embedding_available: bool
    pending_vectors: int = 0  # items searchable by their words only, until the worker embeds them
