"""One-time moves of data written in an older key layout; each runs once per Redis, at start-up.

``session memory sets``: a session's memory set was ``...:session:<id>:memories``, the same key
as the session named ``<id>:memories``; it is ``keys.session_memories`` now. The move merges
into the new set (a gateway of the new version may already have written there) and keeps the
old set's expiry. Safe to run from several gateways at once: each step is one transaction.

``vector models``: a delete removes an item's vectors in the space of every model named in the
tenant's ``keys.vector_models`` set (``hivemind_gateway/search/spaces.py``); vectors stored before
that set existed are found by a scan and their models added to it.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError

from hivemind_common import keys
from hivemind_common.errors import HivemindError
from hivemind_common.redis import HivemindRedis

log = logging.getLogger(__name__)

SESSION_MEMORY_SETS = "sessmem-v1"
VECTOR_MODELS = "vecmodels-v1"


async def move_session_memory_sets(redis: HivemindRedis) -> int:
    """Move every legacy session memory set to its own family; the number moved."""
    if await redis.get(keys.migration_done(SESSION_MEMORY_SETS)):
        return 0
    moved = 0
    async for key in redis.scan_iter(
        match=keys.LEGACY_SESSION_MEMORIES_MATCH, _type="zset", count=1000
    ):
        name = key.decode() if isinstance(key, bytes) else str(key)
        parsed = keys.parse_legacy_session_memories(name)
        if parsed is None:
            continue
        new = keys.session_memories(*parsed)
        ttl = await redis.ttl(name)
        commands: list[tuple[object, ...]] = [
            ("ZUNIONSTORE", new, 2, new, name, "AGGREGATE", "MAX"),
            ("DEL", name),
        ]
        if ttl and ttl > 0:
            commands.append(("EXPIRE", new, ttl))
        await redis.transaction(*commands)
        moved += 1
    await redis.set(keys.migration_done(SESSION_MEMORY_SETS), "1")
    if moved:
        log.info("moved %d session memory sets to their own key family", moved)
    return moved


async def record_vector_models(redis: HivemindRedis) -> int:
    """Add the model of every stored vector to its tenant's set of models; pairs added."""
    if await redis.get(keys.migration_done(VECTOR_MODELS)):
        return 0
    found: set[tuple[str, str]] = set()
    async for key in redis.scan_iter(match=keys.VECTOR_KEYS_MATCH, _type="string", count=1000):
        parsed = keys.parse_vector(key.decode() if isinstance(key, bytes) else str(key))
        if parsed is not None:
            found.add(parsed)
    for tenant, model in sorted(found):
        await redis.sadd(keys.vector_models(tenant), model)
    await redis.set(keys.migration_done(VECTOR_MODELS), "1")
    if found:
        log.info("recorded %d tenant/model pairs of stored vectors", len(found))
    return len(found)


async def run_migrations(redis: HivemindRedis) -> None:
    """Every pending move; a store that is away now is retried at the next start."""
    try:
        await move_session_memory_sets(redis)
        await record_vector_models(redis)
    except (RedisError, HivemindError, UnicodeDecodeError) as exc:  # an odd key: next start
        log.warning("key migrations postponed to the next start: %s", type(exc).__name__)
