"""Facts: one Redis hash each, a lexicographic index, a vector per model, a change per write."""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

from hivemind_common import keys
from hivemind_common.errors import NotFound, TooLarge, Unavailable
from hivemind_common.redis.replies import as_dict
from hivemind_gateway.facts.schemas import FactCreate, FactPublic, FactsPublic
from hivemind_gateway.quotas import reserve_items
from hivemind_gateway.search.index import embed_text
from hivemind_gateway.search.spaces import (
    drop_late_vectors,
    drop_vectors,
    keep_vector,
    vector_models,
)
from hivemind_gateway.search.sync import SearchIndex
from hivemind_gateway.storage_schema import (
    change_command,
    fact_item,
    fact_text,
    load_tags,
    vector_bytes,
)


def _public(key: str, record: dict[str, str]) -> FactPublic:
    return FactPublic(
        key=key,
        value=record.get("value", ""),
        tags=list(load_tags(record.get("tags"))),
        created_at=float(record.get("created_at") or 0),
        updated_at=float(record.get("updated_at") or 0),
    )


async def put_fact(
    *, redis: Any, search: SearchIndex, tenant: str, key: str, body: FactCreate, max_chars: int
) -> FactPublic:
    """Create or replace a fact; embedded now if the service answers, else by the backfill."""
    if len(body.value) > max_chars:
        raise TooLarge(
            f"value has {len(body.value)} characters; the limit is {max_chars}", param="value"
        )
    reserved = await reserve_items(
        redis, tenant=tenant, kind="facts", index_key=keys.facts_index(tenant), member=key
    )
    vec = None
    model = None
    with contextlib.suppress(Unavailable):
        vec, model = await search.embedder.embed_one(embed_text(fact_text(key, body.value)))
    # every model's vector of the old value describes the old value: dropped (the serving
    # model's is replaced at once, or made again by the backfill)
    spaces = await vector_models(redis, tenant, search.embedder.model_id)
    now = f"{time.time():.6f}"
    record_key = keys.fact(tenant, key)
    commands: list[tuple[Any, ...]] = [
        ("HSET", record_key, "value", body.value, "tags", json.dumps(body.tags), "updated_at", now),
        ("HSETNX", record_key, "created_at", now),
        ("ZADD", keys.facts_index(tenant), 0, key),
        *reserved,
    ]
    commands.extend(drop_vectors(tenant, "fact", [key], spaces))
    if vec is not None and model is not None:
        commands.extend(keep_vector(tenant, model, "fact", key, vector_bytes(vec)))
    commands.append(change_command(tenant, "upsert", "fact", key, now, vec is not None))
    commands.append(("HGETALL", record_key))
    results = await redis.transaction(*commands, durable=True)
    record = as_dict(results[-1])
    await search.apply_local(tenant, "fact", fact_item(key, record), key, vec)
    return _public(key, record)


async def get_fact(*, redis: Any, tenant: str, key: str) -> FactPublic:
    record = await redis.hgetall(keys.fact(tenant, key))
    if not record:
        raise NotFound(f"no fact {key!r}")
    return _public(key, record)


async def delete_fact(*, redis: Any, search: SearchIndex, tenant: str, key: str) -> None:
    """Delete a fact, its vectors in every model's space and its index entry."""
    if not await redis.exists(keys.fact(tenant, key)):
        raise NotFound(f"no fact {key!r}")
    commands: list[tuple[Any, ...]] = [
        ("DEL", keys.fact(tenant, key)),
        ("ZREM", keys.facts_index(tenant), key),
    ]
    spaces = await vector_models(redis, tenant, search.embedder.model_id)
    commands.extend(drop_vectors(tenant, "fact", [key], spaces))
    commands.append(change_command(tenant, "delete", "fact", key, f"{time.time():.6f}", False))
    await redis.transaction(*commands, durable=True)
    await drop_late_vectors(redis, tenant, "fact", [key], spaces)
    await search.apply_local(tenant, "fact", None, key, None)


async def list_facts(
    *, redis: Any, tenant: str, limit: int, cursor: str | None, prefix: str | None
) -> FactsPublic:
    """A page of facts in key order; ``next_cursor`` continues after the last key."""
    index = keys.facts_index(tenant)
    low = f"({cursor}" if cursor else (f"[{prefix}" if prefix else "-")
    if cursor and prefix and cursor < prefix:
        low = f"[{prefix}"
    high = f"[{prefix}\x7f" if prefix else "+"
    names = await redis.zrangebylex(index, low, high, start=0, num=limit + 1)
    more = len(names) > limit
    names = names[:limit]
    async with redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hgetall(keys.fact(tenant, name))
        records = await pipe.execute()
    data = [_public(n, r) for n, r in zip(names, records, strict=True) if r]
    total = await redis.zlexcount(index, f"[{prefix}", high) if prefix else await redis.zcard(index)
    return FactsPublic(data=data, count=int(total), next_cursor=names[-1] if more else None)
