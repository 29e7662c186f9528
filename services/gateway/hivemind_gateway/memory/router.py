"""Routes of sessions and memories; the tenant always comes from the caller's key."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query

from hivemind_common.audit import audited
from hivemind_common.auth import ReadPrincipal, WritePrincipal
from hivemind_gateway.deps import ClientAddressDep, RedisDep, SettingsDep, StateDep
from hivemind_gateway.memory import batch, service, sessions
from hivemind_gateway.memory.paging import CURSOR_RE
from hivemind_gateway.memory.schemas import (
    MAX_CONTEXT_CHARS,
    MemoriesBatch,
    MemoriesBatchResult,
    MemoriesPublic,
    MemoryCreate,
    MemoryHits,
    MemoryPublic,
    MemorySearch,
    SessionContext,
    SessionCreate,
    SessionPublic,
    SessionsPublic,
)
from hivemind_gateway.rag.gate import gate_config
from hivemind_gateway.validation import ID_RE

router = APIRouter(prefix="/v1", tags=["memory"])

IdPath = Annotated[str, Path(pattern=ID_RE.pattern)]
Cursor = Annotated[str | None, Query(pattern=CURSOR_RE.pattern, max_length=200)]
Limit = Annotated[int, Query(ge=1, le=200)]


@router.post("/sessions", response_model=SessionPublic, status_code=201)
async def create_session(
    principal: WritePrincipal, redis: RedisDep, body: SessionCreate | None = None
) -> SessionPublic:
    """A new session; every field of the body is optional, and so is the body."""
    return await sessions.create_session(
        redis=redis,
        tenant=principal.tenant,
        body=body if body is not None else SessionCreate(),
        new_id=secrets.token_hex(8),
    )


@router.get("/sessions", response_model=SessionsPublic)
async def list_sessions(
    principal: ReadPrincipal,
    redis: RedisDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    preview_chars: Annotated[int | None, Query(ge=0, le=MAX_CONTEXT_CHARS)] = None,
) -> SessionsPublic:
    """Most recently written sessions first; with ``preview_chars`` each context is cut to
    that many characters (``context_chars`` gives its whole length)."""
    return await sessions.list_sessions(
        redis=redis, tenant=principal.tenant, limit=limit, cursor=cursor, preview=preview_chars
    )


@router.get("/sessions/{session_id}", response_model=SessionPublic)
async def get_session(
    session_id: IdPath, principal: ReadPrincipal, redis: RedisDep
) -> SessionPublic:
    return await sessions.get_session(redis=redis, tenant=principal.tenant, session_id=session_id)


@router.put("/sessions/{session_id}/context", response_model=SessionPublic)
async def put_context(
    session_id: IdPath, body: SessionContext, principal: WritePrincipal, redis: RedisDep
) -> SessionPublic:
    return await sessions.put_context(
        redis=redis, tenant=principal.tenant, session_id=session_id, body=body
    )


@router.post("/memories", response_model=MemoryPublic, status_code=201)
async def store_memory(
    body: MemoryCreate,
    principal: WritePrincipal,
    state: StateDep,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> MemoryPublic:
    """A memory; an ``id`` in the body or an ``Idempotency-Key`` header makes a retry safe."""
    return await service.store_memory(
        redis=state.redis,
        search=state.search,
        tenant=principal.tenant,
        body=body,
        max_chars=settings.max_memory_text_chars,
        memory_id=service.idempotent_id(idempotency_key, body.id),
    )


@router.post("/memories/batch", response_model=MemoriesBatchResult)
async def store_memories(
    body: MemoriesBatch,
    principal: WritePrincipal,
    state: StateDep,
    settings: SettingsDep,
    source: ClientAddressDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> MemoriesBatchResult:
    """Up to 500 memories in one call; each item succeeds or fails on its own (an import:
    audited, one entry per batch). An ``Idempotency-Key`` header names each item without an
    ``id`` by the key and its place, so the same batch sent again stores nothing twice."""
    service.idempotent_id(idempotency_key, None)  # a bad key: 400 before anything is written
    async with audited(
        state.redis,
        "memories.import",
        key_id=principal.key_id,
        tenant=principal.tenant,
        source=source,
    ) as entry:
        result = await batch.store_batch(
            redis=state.redis,
            search=state.search,
            tenant=principal.tenant,
            items=body.memories,
            max_chars=settings.max_memory_text_chars,
            idempotency_key=idempotency_key,
        )
        entry.detail = f"stored={result.stored} failed={result.failed}"
    return result


@router.get("/memories", response_model=MemoriesPublic)
async def list_memories(
    principal: ReadPrincipal,
    redis: RedisDep,
    session_id: Annotated[str | None, Query(pattern=ID_RE.pattern)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> MemoriesPublic:
    """Newest first, of the tenant or of one session."""
    return await service.list_memories(
        redis=redis, tenant=principal.tenant, session_id=session_id, limit=limit, cursor=cursor
    )


@router.post("/memories/search", response_model=MemoryHits)
async def search_memories(
    body: MemorySearch, principal: ReadPrincipal, state: StateDep
) -> MemoryHits:
    return await service.search_memories(
        redis=state.redis,
        search=state.search,
        tenant=principal.tenant,
        body=body,
        cfg=gate_config(state),
    )


@router.get("/memories/{memory_id}", response_model=MemoryPublic)
async def get_memory(memory_id: IdPath, principal: ReadPrincipal, redis: RedisDep) -> MemoryPublic:
    return await service.get_memory(redis=redis, tenant=principal.tenant, memory_id=memory_id)


@router.delete("/memories/{memory_id}", status_code=204)
async def delete_memory(memory_id: IdPath, principal: WritePrincipal, state: StateDep) -> None:
    await service.delete_memory(
        redis=state.redis, search=state.search, tenant=principal.tenant, memory_id=memory_id
    )
