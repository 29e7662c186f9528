"""Bodies of the retrieval API, and the context object the chat route injects."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from hivemind_common.text import InputModel
from hivemind_gateway.docs.schemas import Collection
from hivemind_gateway.validation import Identifier, Query

Quality = Literal["good", "weak", "fallback", "miss"]
ItemKind = Literal["fact", "memory", "doc"]


class RagItem(BaseModel):
    kind: ItemKind
    key: str
    score: float
    pinned: bool = False


class RagCandidate(BaseModel):
    """One candidate the gate looked at, with every score it read and its verdict."""

    kind: ItemKind
    key: str
    text: str  # the stored text ("key: value" for a fact)
    dense: float | None  # cosine to the query; None without a vector (either side)
    lexical: float  # BM25 normalised by the query's total IDF, in [0, 1]
    coverage: float  # IDF share of the query's terms the item contains, in [0, 1]
    fused: float  # the absolute score the gate reads
    rank: float  # the query-relative ranking score (order of candidates and injected items)
    near: bool  # close enough to count as "weak" evidence when nothing is injected
    passed: bool  # the gate let it through (it may still miss the budget)
    injected: bool  # it is in the injected text
    pinned: bool = False
    reason: str  # why it was (not) injected, in words


class RagExplain(BaseModel):
    """How retrieval decided (``explain: true``): every candidate, the gate and the text."""

    query_terms: list[str]  # the query as the lexical side sees it (stemmed, no stop words)
    embedded: bool  # the query had a vector (False: lexical fallback)
    gate: dict[str, float | int | str]  # the gate's settings for this tenant and model
    candidates: list[RagCandidate]  # best ranked first
    injected_text: str  # exactly what would be added to the system prompt ("" when nothing)
    budget_tokens: int
    used_tokens: int  # of the injected text, by the same count the chat route uses


class RagContext(BaseModel):
    """What retrieval injected: the block of text, the items in it, and how sure it was."""

    text: str
    items: list[RagItem]
    quality: Quality
    method: Literal["hybrid", "lexical"] = "hybrid"
    explain: RagExplain | None = None  # only when the request asked for it

    @model_serializer(mode="wrap")
    def _without_empty_explain(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        data: dict[str, object] = handler(self)
        if data.get("explain") is None:
            data.pop("explain", None)  # the answer's shape is unchanged unless asked
        return data


class RagQuery(InputModel):
    model_config = ConfigDict(extra="forbid")

    query: Query
    # absent: HIVEMIND_RAG_BUDGET_TOKENS
    budget_tokens: int | None = Field(default=None, ge=1, le=32_768, strict=True)
    session_id: Identifier | None = None
    explain: bool = Field(default=False, strict=True)
    # reference library collections to draw from (default: all) and to leave out
    collections: list[Collection] | None = Field(default=None, max_length=64)
    skip_collections: list[Collection] | None = Field(default=None, max_length=64)


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
