"""Sessions: a hash each with a TTL refreshed on every write, and an index of the live ones
(by last write), which the tenant's ``max_sessions`` quota counts."""

from __future__ import annotations

import json
import time
from typing import Any

from hivemind_common import keys
from hivemind_common.errors import Conflict, NotFound
from hivemind_common.redis.replies import as_dict
from hivemind_gateway.memory.paging import recency_page
from hivemind_gateway.memory.schemas import (
    SessionContext,
    SessionCreate,
    SessionPublic,
    SessionsPublic,
)
from hivemind_gateway.quotas import write_within_quota
from hivemind_gateway.storage_schema import load_json


def touch_commands(tenant: str, session_id: str, now: float) -> list[tuple[Any, ...]]:
    """Refresh a session's TTL and its place in the recent index (capped)."""
    return [
        ("HSET", keys.session(tenant, session_id), "updated_at", f"{now:.6f}"),
        ("HSETNX", keys.session(tenant, session_id), "created_at", f"{now:.6f}"),
        ("HSETNX", keys.session(tenant, session_id), "id", session_id),
        ("EXPIRE", keys.session(tenant, session_id), keys.SESSION_TTL_S),
        ("EXPIRE", keys.session_memories(tenant, session_id), keys.SESSION_TTL_S),
        ("ZADD", keys.sessions_recent(tenant), now, session_id),
        ("ZREMRANGEBYSCORE", keys.sessions_recent(tenant), "-inf", now - keys.SESSION_TTL_S),
    ]


# KEYS: the recent index, then each session's hash; ARGV: the session ids
_DROP_GONE = """
for i, id in ipairs(ARGV) do
  if redis.call('EXISTS', KEYS[i + 1]) == 0 then redis.call('ZREM', KEYS[1], id) end
end
return 0
"""


def _public(
    record: dict[str, str], ttl: int, memories: int, preview: int | None = None
) -> SessionPublic:
    context = record.get("context") or None
    return SessionPublic(
        id=record["id"],
        context=context[:preview] if context is not None and preview is not None else context,
        context_chars=len(context or ""),
        files=load_json(record.get("files"), []),
        task=record.get("task") or None,
        metadata=load_json(record.get("metadata"), {}),
        created_at=float(record.get("created_at") or 0),
        updated_at=float(record.get("updated_at") or 0),
        expires_in=max(ttl, 0),
        memories=memories,
    )


async def create_session(
    *, redis: Any, tenant: str, body: SessionCreate, new_id: str
) -> SessionPublic:
    session_id = body.id or new_id
    key = keys.session(tenant, session_id)
    if await redis.exists(key):  # the common case, answered without the script
        raise Conflict(f"session {session_id!r} already exists")
    fields: list[Any] = ["files", json.dumps(body.files), "metadata", json.dumps(body.metadata)]
    if body.context is not None:
        fields += ["context", body.context]
    if body.task is not None:
        fields += ["task", body.task]
    # the check again, with the quota and the write in one script: of two creates of one id
    # (or a create racing a context PUT), the later one is refused, never written over the first
    try:
        return await _write(redis, tenant, session_id, fields, new=True)
    except Conflict:
        raise Conflict(f"session {session_id!r} already exists") from None


async def put_context(
    *, redis: Any, tenant: str, session_id: str, body: SessionContext
) -> SessionPublic:
    """Replace the working context; creates the session if it is new."""
    fields: list[Any] = ["context", body.context]
    if body.files is not None:
        fields += ["files", json.dumps(body.files)]
    if body.task is not None:
        fields += ["task", body.task]
    # the quota check and the write in one round trip (a live session is an update)
    return await _write(redis, tenant, session_id, fields)


async def _write(
    redis: Any, tenant: str, session_id: str, fields: list[Any], *, new: bool = False
) -> SessionPublic:
    """``fields`` written, the session touched and read back, within the tenant's quota, in
    one script; ``new``: Conflict, and nothing written, when the session exists."""
    key = keys.session(tenant, session_id)
    replies = await write_within_quota(
        redis,
        tenant=tenant,
        kind="sessions",
        index_key=keys.sessions_recent(tenant),
        member=session_id,
        commands=[
            ("HSET", key, *fields),
            *touch_commands(tenant, session_id, time.time()),
            *_read_commands(tenant, session_id),
        ],
        absent=key if new else None,
    )
    return _written(session_id, replies)


def _read_commands(tenant: str, session_id: str) -> list[tuple[Any, ...]]:
    """What :func:`get_session` reads, appended to a write's own transaction (one round trip
    instead of two, and the answer is the state that write left)."""
    key = keys.session(tenant, session_id)
    return [("HGETALL", key), ("TTL", key), ("ZCARD", keys.session_memories(tenant, session_id))]


def _written(session_id: str, results: list[Any]) -> SessionPublic:
    record, ttl, count = as_dict(results[-3]), results[-2], results[-1]
    record.setdefault("id", session_id)
    return _public(record, int(ttl), int(count))


async def get_session(*, redis: Any, tenant: str, session_id: str) -> SessionPublic:
    key = keys.session(tenant, session_id)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(key)
        pipe.ttl(key)
        pipe.zcard(keys.session_memories(tenant, session_id))
        record, ttl, count = await pipe.execute()
    record = as_dict(record)
    if not record:
        raise NotFound(f"no session {session_id!r} (or it expired)")
    record.setdefault("id", session_id)
    return _public(record, int(ttl), int(count))


async def list_sessions(
    *, redis: Any, tenant: str, limit: int, cursor: str | None, preview: int | None = None
) -> SessionsPublic:
    """Most recently written first; expired sessions are dropped from the index as met.
    ``preview``: each context cut to its first ``preview`` characters (a page of 200 whole
    contexts can be 40 MB, more than an agent's window)."""
    index = keys.sessions_recent(tenant)
    ids, next_cursor = await recency_page(redis, index, limit=limit, cursor=cursor)
    async with redis.pipeline(transaction=False) as pipe:
        for session_id in ids:
            pipe.hgetall(keys.session(tenant, session_id))
            pipe.ttl(keys.session(tenant, session_id))
            pipe.zcard(keys.session_memories(tenant, session_id))
        replies = await pipe.execute()
    data: list[SessionPublic] = []
    gone: list[str] = []
    for i, session_id in enumerate(ids):
        record, ttl, count = as_dict(replies[3 * i]), replies[3 * i + 1], replies[3 * i + 2]
        if not record:
            gone.append(session_id)
            continue
        record.setdefault("id", session_id)
        data.append(_public(record, int(ttl), int(count), preview))
    if gone:  # dropped only if still gone: a PUT may have brought one back meanwhile
        session_keys = [keys.session(tenant, s) for s in gone]
        await redis.eval(_DROP_GONE, 1 + len(gone), index, *session_keys, *gone)
    total = int(await redis.zcard(index))
    return SessionsPublic(data=data, count=total, next_cursor=next_cursor)
