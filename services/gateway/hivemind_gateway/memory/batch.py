"""``POST /v1/memories/batch``: many memories in one call, reported item by item.

Each item is validated on its own (a bad item fails alone, with the same problem a single
``POST /v1/memories`` would get); the valid ones are written in chunks, one MULTI/EXEC per
chunk, so a chunk is stored whole or not at all. Nothing waits for an embedding: items are
searchable lexically at once, and the search index's worker adds their vectors.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from typing import Any

from pydantic import ValidationError
from redis.exceptions import RedisError

from hivemind_common import keys
from hivemind_common.error_handlers import from_redis_error
from hivemind_common.errors import Conflict, HivemindError, QuotaExceeded, TooLarge
from hivemind_gateway.claims import body_digest, claim_digests, release_commands
from hivemind_gateway.memory.schemas import (
    BatchItemResult,
    MemoriesBatchResult,
    MemoryCreate,
)
from hivemind_gateway.memory.service import _compared, _same_memory, memory_record
from hivemind_gateway.memory.sessions import touch_commands
from hivemind_gateway.quotas import reserve_items
from hivemind_gateway.search.sync import SearchIndex
from hivemind_gateway.storage_schema import change_command, memory_item

log = logging.getLogger(__name__)

# items per MULTI/EXEC: enough to amortise the round trip, few enough not to stall Redis
CHUNK = 100


def _validation_problem(exc: ValidationError) -> dict[str, Any]:
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid"}
    param = ".".join(str(p) for p in first.get("loc", ())) or None
    return {"status": 422, "code": "invalid_request", "detail": first["msg"], "param": param}


def _problem(exc: HivemindError) -> dict[str, Any]:
    return {"status": exc.status, "code": exc.code, "detail": exc.message, "param": exc.param}


def _parse(raw: Any, max_chars: int) -> MemoryCreate | dict[str, Any]:
    """The item as a MemoryCreate, or the problem that refuses it."""
    try:
        body = MemoryCreate.model_validate(raw)
    except ValidationError as exc:
        return _validation_problem(exc)
    if len(body.text) > max_chars:
        return _problem(
            TooLarge(
                f"text has {len(body.text)} characters; the limit is {max_chars}", param="text"
            )
        )
    return body


async def _stored(redis: Any, tenant: str, ids: list[str]) -> dict[str, dict[str, str]]:
    """The stored records of those of ``ids`` that exist."""
    if not ids:
        return {}
    async with redis.pipeline(transaction=False) as pipe:
        for memory_id in ids:
            pipe.hgetall(keys.memory(tenant, memory_id))
        rows = await pipe.execute()
    return {memory_id: row for memory_id, row in zip(ids, rows, strict=True) if row}


def _commands(
    tenant: str, memory_id: str, record: dict[str, str], now: float
) -> list[tuple[Any, ...]]:
    commands: list[tuple[Any, ...]] = [
        ("HSET", keys.memory(tenant, memory_id), *[x for kv in record.items() for x in kv]),
        ("ZADD", keys.memories_index(tenant), now, memory_id),
    ]
    if record["session_id"]:
        commands.append(
            ("ZADD", keys.session_memories(tenant, record["session_id"]), now, memory_id)
        )
    commands.append(
        change_command(tenant, "upsert", "memory", memory_id, record["created_at"], False)
    )
    return commands


async def store_batch(
    *,
    redis: Any,
    search: SearchIndex,
    tenant: str,
    items: list[Any],
    max_chars: int,
    idempotency_key: str | None = None,
) -> MemoriesBatchResult:
    """Store every valid item; the result says, per item in order, its id or its problem.
    With ``idempotency_key`` (a checked ``Idempotency-Key``), an item without an ``id`` gets
    one derived from the key and its index: a retry of the batch names the same memories."""
    results: list[BatchItemResult] = []
    valid: list[tuple[int, MemoryCreate]] = []
    for i, raw in enumerate(items):
        parsed = _parse(raw, max_chars)
        if isinstance(parsed, MemoryCreate):
            if idempotency_key is not None and parsed.id is None:
                derived = hashlib.sha256(f"{idempotency_key}\0{i}".encode()).hexdigest()[:24]
                parsed = parsed.model_copy(update={"id": derived})
            valid.append((i, parsed))
        results.append(
            BatchItemResult(index=i, error=None if isinstance(parsed, MemoryCreate) else parsed)
        )
    seen: dict[str, int] = {}
    for i, body in valid:  # a client id twice in one batch: the later item is refused
        if body.id is not None and body.id in seen:
            results[i] = BatchItemResult(
                index=i,
                error=_problem(
                    Conflict(
                        f"id {body.id!r} is also item {seen[body.id]} of this batch", param="id"
                    )
                ),
            )
        elif body.id is not None:
            seen[body.id] = i
    valid = [(i, body) for i, body in valid if results[i].error is None]
    for start in range(0, len(valid), CHUNK):
        chunk = valid[start : start + CHUNK]
        records: list[tuple[int, MemoryCreate, str, dict[str, str]]] = []
        try:
            await _store_chunk(redis, search, tenant, chunk, records, results)
        except (RedisError, HivemindError) as exc:
            error = exc if isinstance(exc, HivemindError) else from_redis_error(exc)
            if not any(r.id is not None and r.error is None for r in results):
                raise  # nothing is stored: the whole request fails, and a retry is safe
            # earlier chunks are stored: say so item by item rather than fail them all
            log.warning("memory batch of tenant %s stopped at item %d: %s", tenant, chunk[0][0],
                        error.message)  # fmt: skip
            minted = {i: mid for i, _, mid, _ in records}
            for i, _ in valid[start:]:
                if results[i].id is None and results[i].error is None:
                    # an id minted for this chunk may have been written: a retry with it is safe
                    results[i] = BatchItemResult(index=i, id=minted.get(i), error=_problem(error))
            break
    ok = sum(1 for r in results if r.error is None)
    return MemoriesBatchResult(results=results, stored=ok, failed=len(results) - ok)


async def _store_chunk(
    redis: Any,
    search: SearchIndex,
    tenant: str,
    chunk: list[tuple[int, MemoryCreate]],
    records: list[tuple[int, MemoryCreate, str, dict[str, str]]],
    results: list[BatchItemResult],
) -> None:
    """Mint ids, claim the client's, and write one chunk (``records`` is filled as ids are
    minted, so a failure can still name them)."""
    now = time.time()
    for offset, (i, body) in enumerate(chunk):
        # distinct created_at stamps keep the items' order (and their change versions)
        record = memory_record(body, now + offset * 1e-6)
        records.append((i, body, body.id or secrets.token_hex(12), record))
    # the client's ids are claimed before they are read (as the single route does): another
    # request writing another body under one of them concurrently is refused, item by item
    digests = {mid: body_digest(_compared(rec)) for _, body, mid, rec in records if body.id}
    taken = await claim_digests(redis, tenant, "memory", digests)
    claimed = {mid for mid in digests if mid not in taken}
    # a chunk that fails leaves its claims to lapse, as the single route does
    await _write_chunk(redis, search, tenant, records, taken, claimed, results, now)


async def _session_room(
    redis: Any,
    tenant: str,
    written: list[tuple[int, str, dict[str, str]]],
    results: list[BatchItemResult],
) -> tuple[list[tuple[int, str, dict[str, str]]], list[tuple[Any, ...]]]:
    """The items whose session has room under the tenant's ``max_sessions``, and the commands
    that turn the places reserved into the sessions. A live session always has room; new ones
    take places in the order the batch names them, and the items of those left without one
    are refused (the others still go in)."""
    named = list(dict.fromkeys(r["session_id"] for _, _, r in written if r["session_id"]))
    if not named:
        return written, []
    live = await redis.zmscore(keys.sessions_recent(tenant), named)
    expired = time.time() - keys.SESSION_TTL_S  # a session not written since is gone
    new = [s for s, score in zip(named, live, strict=True) if score is None or score <= expired]
    admitted: list[str] = new
    reserved: list[tuple[Any, ...]] = []
    refusal: QuotaExceeded | None = None
    while admitted:
        try:
            reserved = await reserve_items(
                redis,
                tenant=tenant,
                kind="sessions",
                index_key=keys.sessions_recent(tenant),
                member=None,
                adding=len(admitted),
            )
            break
        except QuotaExceeded as exc:
            refusal = exc
            extra = exc.extra or {}
            room = int(extra.get("limit", 0)) - int(extra.get("used", 0))
            # as many as there is room for, once; then none
            admitted = admitted[: max(room, 0)] if room < len(admitted) else []
    if refusal is None:
        return written, reserved
    shut = set(new) - set(admitted)
    kept = []
    for item in written:
        if item[2]["session_id"] in shut:
            results[item[0]] = BatchItemResult(index=item[0], error=_problem(refusal))
        else:
            kept.append(item)
    return kept, reserved


async def _item_room(
    redis: Any,
    tenant: str,
    written: list[tuple[int, str, dict[str, str]]],
    results: list[BatchItemResult],
) -> list[tuple[int, str, dict[str, str]]]:
    """The items that fit under the tenant's ``max_memories``, in order; each one past it gets
    ``quota_exceeded`` (a chunk of 100 with 99 places left stores 99, as 100 single writes
    would). The places are reserved with the chunk's write; a concurrent writer can still
    take them first, and then the chunk is refused whole."""
    if not written:
        return written
    try:
        await reserve_items(
            redis, tenant=tenant, kind="memories", index_key=keys.memories_index(tenant),
            member=None, adding=len(written), check_only=True,
        )  # fmt: skip
        return written
    except QuotaExceeded as exc:
        free = max(0, int(exc.extra.get("limit", 0)) - int(exc.extra.get("used", 0)))
        for i, _, _ in written[free:]:
            results[i] = BatchItemResult(index=i, error=_problem(exc))
        return written[:free]


async def _write_chunk(
    redis: Any,
    search: SearchIndex,
    tenant: str,
    records: list[tuple[int, MemoryCreate, str, dict[str, str]]],
    taken: dict[str, str],
    claimed: set[str],
    results: list[BatchItemResult],
    now: float,
) -> None:
    """Write one chunk's items in one transaction, filling in their results."""
    written: list[tuple[int, str, dict[str, str]]] = []
    commands: list[tuple[Any, ...]] = []
    sessions: set[str] = set()
    settled: list[str] = []
    existing = await _stored(redis, tenant, [mid for _, body, mid, _ in records if body.id])
    for i, _, memory_id, record in records:
        if memory_id in taken:
            conflict = Conflict(
                f"memory {memory_id!r} is being written with a different memory", param="id"
            )
            results[i] = BatchItemResult(index=i, error=_problem(conflict))
            continue
        before = existing.get(memory_id)
        if before:  # the client's own id again, as the single route keeps it
            settled.append(memory_id)  # stored: the record judges later writes, not the claim
            if _same_memory(record, before):
                results[i] = BatchItemResult(index=i, id=memory_id)  # a retry: stored once
            else:
                conflict = Conflict(
                    f"memory {memory_id!r} already holds a different memory", param="id"
                )
                results[i] = BatchItemResult(index=i, error=_problem(conflict))
            continue
        written.append((i, memory_id, record))
    written, room = await _session_room(redis, tenant, written, results)
    written = await _item_room(redis, tenant, written, results)
    # the claims of the items written go with their transaction; an item refused before it was
    # written leaves its claim to lapse (another request of the same body may be writing it)
    settled_claims = release_commands(tenant, "memory", [m for m in settled if m in claimed])
    if not written:
        if settled_claims:
            await redis.transaction(*settled_claims)
        return
    written_claims = release_commands(tenant, "memory", [m for _, m, _ in written if m in claimed])
    for _, memory_id, record in written:
        commands += _commands(tenant, memory_id, record, float(record["created_at"]))
        if record["session_id"]:
            sessions.add(record["session_id"])
    for session_id in sorted(sessions):
        commands += touch_commands(tenant, session_id, now)
    try:
        reserved = await reserve_items(
            redis,
            tenant=tenant,
            kind="memories",
            index_key=keys.memories_index(tenant),
            member=None,
            adding=len(written),
        )
        await redis.transaction(
            *commands, *reserved, *room, *written_claims, *settled_claims, durable=True
        )
    except HivemindError as exc:
        for i, memory_id, _ in written:  # the id too: under strong durability a chunk
            # refused as not replicated may still be on the primary; a retry with it is safe
            results[i] = BatchItemResult(index=i, id=memory_id, error=_problem(exc))
        # the sessions' places are given back now rather than in 30 s
        if room or settled_claims:
            await redis.transaction(*room, *settled_claims)
        return
    for i, memory_id, _ in written:
        results[i] = BatchItemResult(index=i, id=memory_id)
    await search.apply_local_many(
        tenant, "memory", [memory_item(memory_id, record) for _, memory_id, record in written]
    )
