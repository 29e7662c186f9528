"""Bodies of the facts API."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from hivemind_common.ids import Tags
from hivemind_common.text import InputModel, SearchQuery, Text


class FactCreate(InputModel):
    """``PUT /v1/facts/{key}``: the value and optional tags (``pinned`` is always injected)."""

    model_config = ConfigDict(extra="forbid")

    value: Text  # the per-deployment limit (settings.max_fact_value_chars) is checked later
    tags: Tags = Field(default_factory=list)


class FactPublic(BaseModel):
    key: str
    value: str
    tags: list[str]
    created_at: float
    updated_at: float


class FactsPublic(BaseModel):
    data: list[FactPublic]
    count: int
    next_cursor: str | None = None


class FactSearch(InputModel):
    model_config = ConfigDict(extra="forbid")

    query: SearchQuery
    top_k: int = Field(default=5, ge=1, le=100, strict=True)
    min_score: float = Field(default=0.0, ge=-1.0, le=2.0)


class FactHit(BaseModel):
    key: str
    value: str
    tags: list[str]
    score: float


class FactHits(BaseModel):
    data: list[FactHit]
    method: str
