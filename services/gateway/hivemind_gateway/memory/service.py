"""Memories: free text with a session, tags and metadata; embedded and searchable."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from typing import Any

from hivemind_common import keys
from hivemind_common.errors import Conflict, Invalid, NotFound, QuotaExceeded, TooLarge
from hivemind_common.redis.replies import as_dict
from hivemind_gateway.claims import body_digest, claim_digests, drop_claim, release_commands
from hivemind_gateway.memory.paging import recency_page
from hivemind_gateway.memory.schemas import (
    MemoriesPublic,
    MemoryCreate,
    MemoryHit,
    MemoryHits,
    MemoryPublic,
    MemorySearch,
)
from hivemind_gateway.memory.sessions import touch_commands
from hivemind_gateway.quotas import reserve_items
from hivemind_gateway.rag.gate import embed_query, score_kind
from hivemind_gateway.rag.scoring import GateConfig
from hivemind_gateway.search.spaces import drop_late_vectors, drop_vectors, vector_models
from hivemind_gateway.search.sync import SearchIndex
from hivemind_gateway.storage_schema import (
    change_command,
    load_json,
    load_tags,
    memory_item,
)


def _public(memory_id: str, record: dict[str, str]) -> MemoryPublic:
    return MemoryPublic(
        id=memory_id,
        text=record.get("text", ""),
        session_id=record.get("session_id") or None,
        tags=list(load_tags(record.get("tags"))),
        metadata=load_json(record.get("metadata"), {}),
        created_at=float(record.get("created_at") or 0),
    )


def memory_record(body: MemoryCreate, created_at: float) -> dict[str, str]:
    """The hash a memory is stored as."""
    return {
        "text": body.text,
        "session_id": body.session_id or "",
        "tags": json.dumps(body.tags),
        "metadata": json.dumps(body.metadata),
        "created_at": f"{created_at:.6f}",
    }


def idempotent_id(idempotency_key: str | None, body_id: str | None) -> str | None:
    """The memory id a client chose: the body's ``id``, or one derived from its
    ``Idempotency-Key`` header (the same key always names the same memory of the tenant)."""
    if idempotency_key is None:
        return body_id
    if not 1 <= len(idempotency_key) <= 255 or not all(33 <= ord(c) < 127 for c in idempotency_key):
        raise Invalid(
            "Idempotency-Key must be 1 to 255 visible ASCII characters", param="Idempotency-Key"
        )
    derived = hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]
    if body_id is not None and body_id != derived:
        raise Invalid(
            "give either a memory id or an Idempotency-Key, not two that disagree", param="id"
        )
    return derived


_COMPARED = ("text", "session_id", "tags", "metadata")


def _compared(record: dict[str, str]) -> dict[str, str]:
    """The fields that make two writes under one id the same memory."""
    return {f: record.get(f, "") for f in _COMPARED}


def _same_memory(record: dict[str, str], stored: dict[str, str]) -> bool:
    return _compared(record) == _compared(stored)


async def store_memory(
    *,
    redis: Any,
    search: SearchIndex,
    tenant: str,
    body: MemoryCreate,
    max_chars: int,
    memory_id: str | None = None,
) -> MemoryPublic:
    """Store a memory (touching its session); the search index's worker embeds it.

    ``memory_id`` (or ``body.id``) is the client's own id: writing it again with the same body
    writes the stored memory again, unchanged, and answers it (so a write retried after an error
    or a lost answer is stored exactly once, replicated before it answers); another body under
    that id is a 409.
    """
    if len(body.text) > max_chars:
        raise TooLarge(
            f"text has {len(body.text)} characters; the limit is {max_chars}", param="text"
        )
    chosen = memory_id or body.id
    memory_id = chosen or secrets.token_hex(12)
    record = memory_record(body, time.time())
    released: list[tuple[Any, ...]] = []
    if chosen:
        # claim the id before reading it: a concurrent write of another body under the same id
        # is refused here, not overwritten after both found the id free
        digest = body_digest(_compared(record))
        if await claim_digests(redis, tenant, "memory", {memory_id: digest}):
            raise Conflict(
                f"memory {memory_id!r} is being written with a different memory", param="id"
            )
        released = release_commands(tenant, "memory", [memory_id])
    # a write that fails leaves its claim to lapse (keys.WRITE_CLAIM_MS): a request with the
    # same body may still be writing under it (hivemind_gateway/claims.py)
    return await _write(redis, search, tenant, body, memory_id, chosen, record, released)


async def _write(
    redis: Any,
    search: SearchIndex,
    tenant: str,
    body: MemoryCreate,
    memory_id: str,
    chosen: str | None,
    record: dict[str, str],
    released: list[tuple[Any, ...]],
) -> MemoryPublic:
    stamp = record["created_at"]
    now = float(stamp)
    stored: dict[str, str] = {}
    if chosen:
        stored = await redis.hgetall(keys.memory(tenant, memory_id))
        if stored:
            if not _same_memory(record, stored):
                # the record, not this request's claim, refuses other bodies from now on
                await drop_claim(redis, tenant, "memory", memory_id, body_digest(_compared(record)))
                raise Conflict(f"memory {memory_id!r} already holds a different memory", param="id")
            stamp = record["created_at"] = stored.get("created_at") or stamp
            now = float(stamp)
    reserved = await reserve_items(
        redis, tenant=tenant, kind="memories", index_key=keys.memories_index(tenant), member=chosen
    )
    if body.session_id and not stored:  # its session is a session: a new one takes a place
        try:
            reserved += await reserve_items(
                redis,
                tenant=tenant,
                kind="sessions",
                index_key=keys.sessions_recent(tenant),
                member=body.session_id,
            )
        except QuotaExceeded:
            if reserved:  # the memory's place is given back now, not in 30 s
                await redis.transaction(*reserved)
            raise
    # the search index's worker adds the vector (within a second); until then, words find it
    commands: list[tuple[Any, ...]] = [
        ("HSET", keys.memory(tenant, memory_id), *[x for kv in record.items() for x in kv]),
        ("ZADD", keys.memories_index(tenant), now, memory_id),
        *reserved,
    ]
    if body.session_id and not stored:  # a retry's first write already touched its session
        commands.append(("ZADD", keys.session_memories(tenant, body.session_id), now, memory_id))
        commands += touch_commands(tenant, body.session_id, time.time())
    commands.append(change_command(tenant, "upsert", "memory", memory_id, stamp, False))
    await redis.transaction(*commands, *released, durable=True)
    await search.apply_local(tenant, "memory", memory_item(memory_id, record), memory_id, None)
    return _public(memory_id, record)


async def get_memory(*, redis: Any, tenant: str, memory_id: str) -> MemoryPublic:
    record = await redis.hgetall(keys.memory(tenant, memory_id))
    if not record:
        raise NotFound(f"no memory {memory_id!r}")
    return _public(memory_id, record)


async def delete_memory(*, redis: Any, search: SearchIndex, tenant: str, memory_id: str) -> None:
    record = await redis.hgetall(keys.memory(tenant, memory_id))
    if not record:
        raise NotFound(f"no memory {memory_id!r}")
    commands: list[tuple[Any, ...]] = [
        ("DEL", keys.memory(tenant, memory_id)),
        ("ZREM", keys.memories_index(tenant), memory_id),
    ]
    if record.get("session_id"):
        commands.append(("ZREM", keys.session_memories(tenant, record["session_id"]), memory_id))
    spaces = await vector_models(redis, tenant, search.embedder.model_id)
    commands.extend(drop_vectors(tenant, "memory", [memory_id], spaces))
    commands.append(
        change_command(tenant, "delete", "memory", memory_id, f"{time.time():.6f}", False)
    )
    await redis.transaction(*commands, durable=True)
    await drop_late_vectors(redis, tenant, "memory", [memory_id], spaces)
    await search.apply_local(tenant, "memory", None, memory_id, None)


async def list_memories(
    *, redis: Any, tenant: str, session_id: str | None, limit: int, cursor: str | None
) -> MemoriesPublic:
    """Newest first, of the tenant or of one session."""
    index = keys.session_memories(tenant, session_id) if session_id else keys.memories_index(tenant)
    ids, next_cursor = await recency_page(redis, index, limit=limit, cursor=cursor)
    records = await _records(redis, tenant, ids)
    data = [_public(i, r) for i, r in zip(ids, records, strict=True) if r]
    total = int(await redis.zcard(index))
    return MemoriesPublic(data=data, count=total, next_cursor=next_cursor)


async def _records(redis: Any, tenant: str, ids: list[str]) -> list[dict[str, str]]:
    if not ids:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for memory_id in ids:
            pipe.hgetall(keys.memory(tenant, memory_id))
        return [as_dict(r) for r in await pipe.execute()]


async def search_memories(
    *, redis: Any, search: SearchIndex, tenant: str, body: MemorySearch, cfg: GateConfig
) -> MemoryHits:
    """Memories ranked by the fused score, filtered by session and (all) tags."""

    index = await search.tenant(tenant)
    vec = await embed_query(search, body.query, tenant=tenant)
    ranked = score_kind(
        index,
        "memory",
        vec,
        body.query,
        k=body.top_k,
        cfg=cfg,
        session_id=body.session_id,
        tags=tuple(body.tags),
    )[: body.top_k]
    records = await _records(redis, tenant, [s.hit.item.id for s in ranked])
    data = [
        MemoryHit(**_public(s.hit.item.id, r).model_dump(), score=s.score)
        for s, r in zip(ranked, records, strict=True)
        if r
    ]
    return MemoryHits(data=data, method="hybrid" if vec is not None else "lexical")
