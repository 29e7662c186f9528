"""Bodies of the facts API."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from hivemind_gateway.facts.validation import Query, Tags, clean_text

# the per-deployment limit (settings.max_fact_value_chars) is checked in the service
FactValue = Annotated[str, StringConstraints(strict=True, min_length=1), AfterValidator(clean_text)]


class FactCreate(BaseModel):
    """``PUT /v1/facts/{key}``: the value and optional tags (``pinned`` is always injected)."""

    model_config = ConfigDict(extra="forbid")

    value: FactValue
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


class FactSearch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: Query
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
