"""Routes: ``POST /v1/rag/context``, ``GET /v1/rag/suggestions``, ``GET /v1/rag/stats``,
``GET /v1/rag/history``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from hivemind_common.auth import ReadPrincipal
from hivemind_common.errors import Invalid
from hivemind_gateway.deps import StateDep
from hivemind_gateway.rag.history import QualityHistory, quality_history
from hivemind_gateway.rag.retrieval_log import read_counters, suggestions
from hivemind_gateway.rag.schemas import RagContext, RagQuery, RagStats, Suggestions
from hivemind_gateway.rag.service import retrieve_context

router = APIRouter(prefix="/v1/rag", tags=["retrieval"])


@router.post("/context", response_model=RagContext)
async def rag_context(body: RagQuery, principal: ReadPrincipal, state: StateDep) -> RagContext:
    """What would be injected into a prompt for ``query``; with ``explain``, every candidate
    with its dense, lexical and fused scores and why the gate injected it or not."""
    return await retrieve_context(
        state,
        tenant=principal.tenant,
        query=body.query,
        budget_tokens=(
            body.budget_tokens
            if body.budget_tokens is not None
            else state.settings.rag_budget_tokens
        ),
        session_id=body.session_id,
        with_explain=body.explain,
        collections=body.collections,
        skip_collections=body.skip_collections,
    )


@router.get("/suggestions", response_model=Suggestions)
async def rag_suggestions(
    principal: ReadPrincipal,
    state: StateDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> Suggestions:
    """Topics that weak and missed queries asked about and no fact covers."""
    index = await state.search.tenant(principal.tenant)
    retention_s = state.settings.rag_log_retention_days * 86400
    return await suggestions(
        state.redis, index, tenant=principal.tenant, limit=limit, retention_s=retention_s
    )


@router.get("/stats", response_model=RagStats)
async def rag_stats(principal: ReadPrincipal, state: StateDep) -> RagStats:
    """Retrievals per quality and method, and the size of the tenant's index."""
    counters, logged = await read_counters(state.redis, principal.tenant)
    index = await state.search.tenant(principal.tenant)
    return RagStats(
        counters=counters,
        logged=logged,
        index=index.sizes(),
        embedding_model=state.search.embedder.model_id,
        embedding_available=state.search.embedder.available,
        pending_vectors=state.search.pending_vectors(principal.tenant),
    )


MAX_HISTORY_BUCKETS = 2000


@router.get("/history", response_model=QualityHistory)
async def rag_history(
    principal: ReadPrincipal,
    state: StateDep,
    hours: Annotated[float, Query(gt=0, le=24 * 366)] = 24.0,
    bucket_s: Annotated[int, Query(ge=60, le=86_400)] = 3600,
) -> QualityHistory:
    """Retrievals per gate verdict (good, weak, miss, fallback) per time bucket, oldest first;
    never further back than the retrieval log's retention."""
    hours = min(hours, state.settings.rag_log_retention_days * 24)
    if hours * 3600 / bucket_s > MAX_HISTORY_BUCKETS:
        raise Invalid(
            f"at most {MAX_HISTORY_BUCKETS} buckets: make bucket_s larger or hours smaller",
            param="bucket_s",
        )
    return await quality_history(
        state.redis, tenant=principal.tenant, hours=hours, bucket_s=bucket_s
    )
