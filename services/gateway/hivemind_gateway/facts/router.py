"""Routes of the facts API; the tenant always comes from the caller's key."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from hivemind_common.auth import ReadPrincipal, WritePrincipal
from hivemind_common.ids import FACT_KEY_PATTERN, FACT_PREFIX_PATTERN
from hivemind_gateway.deps import RedisDep, StateDep
from hivemind_gateway.facts import service
from hivemind_gateway.facts.schemas import (
    FactCreate,
    FactHit,
    FactHits,
    FactPublic,
    FactSearch,
    FactsPublic,
)
from hivemind_gateway.rag.gate import embed_query, gate_config, score_kind

router = APIRouter(prefix="/v1/facts", tags=["facts"])

FactKey = Annotated[str, Path(pattern=FACT_KEY_PATTERN, description="the fact's key")]


@router.post("/search", response_model=FactHits)
async def search_facts(body: FactSearch, principal: ReadPrincipal, state: StateDep) -> FactHits:
    """Facts ranked by fused dense + lexical score (lexical only while embeddings are away)."""
    index = await state.search.tenant(principal.tenant)
    vec = await embed_query(state.search, body.query, tenant=principal.tenant)
    ranked = score_kind(index, "fact", vec, body.query, k=body.top_k, cfg=gate_config(state))
    data: list[FactHit] = []
    for s in ranked:
        if s.score < body.min_score or len(data) >= body.top_k:
            continue
        key = s.hit.item.id
        value = s.hit.item.text[len(key) + 2 :]
        data.append(FactHit(key=key, value=value, tags=list(s.hit.item.tags), score=s.score))
    return FactHits(data=data, method="hybrid" if vec is not None else "lexical")


@router.put("/{key:path}", response_model=FactPublic)
async def put_fact(
    key: FactKey,
    body: FactCreate,
    principal: WritePrincipal,
    state: StateDep,
) -> FactPublic:
    """Create or replace a fact."""
    return await service.put_fact(
        redis=state.redis,
        search=state.search,
        tenant=principal.tenant,
        key=key,
        body=body,
        max_chars=state.settings.max_fact_value_chars,
    )


@router.get("/{key:path}", response_model=FactPublic)
async def get_fact(key: FactKey, principal: ReadPrincipal, redis: RedisDep) -> FactPublic:
    return await service.get_fact(redis=redis, tenant=principal.tenant, key=key)


@router.delete("/{key:path}", status_code=204)
async def delete_fact(key: FactKey, principal: WritePrincipal, state: StateDep) -> None:
    await service.delete_fact(
        redis=state.redis, search=state.search, tenant=principal.tenant, key=key
    )


@router.get("", response_model=FactsPublic)
async def list_facts(
    principal: ReadPrincipal,
    redis: RedisDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(pattern=FACT_KEY_PATTERN)] = None,
    prefix: Annotated[str | None, Query(pattern=FACT_PREFIX_PATTERN)] = None,
) -> FactsPublic:
    """A page of facts in key order; pass ``next_cursor`` back as ``cursor`` for the next."""
    return await service.list_facts(
        redis=redis, tenant=principal.tenant, limit=limit, cursor=cursor, prefix=prefix
    )
