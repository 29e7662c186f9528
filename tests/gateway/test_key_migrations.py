"""A session memory set in the old key layout is moved to its own family, once."""

from __future__ import annotations

import asyncio

import redis

from hivemind_common import keys
from hivemind_common.redis import connect_redis
from hivemind_gateway.migrations import SESSION_MEMORY_SETS, move_session_memory_sets

LEGACY = "hm:{t:acme}:session:x:memories"


def _move(url: str) -> int:
    async def run() -> int:
        client = connect_redis(url)
        try:
            return await move_session_memory_sets(client)
        finally:
            await client.aclose()

    return asyncio.run(run())


def test_a_legacy_memory_set_is_moved_and_merged_once(gateway) -> None:
    with gateway.client() as c:
        made = c.post("/v1/memories", json={"text": "old note", "session_id": "x"}).json()
        raw = redis.Redis.from_url(gateway.redis_url, decode_responses=True)
        # put it back where an older gateway kept it, with the expiry it had
        raw.rename(keys.session_memories("acme", "x"), LEGACY)
        raw.expire(LEGACY, 1000)
        raw.delete(keys.migration_done(SESSION_MEMORY_SETS))
        # a session hash whose name ends in ':memories' is not a memory set: it stays
        raw.hset("hm:{t:acme}:session:y:memories", mapping={"id": "y:memories"})
        assert c.get("/v1/sessions/x").json()["memories"] == 0

        assert _move(gateway.redis_url) == 1
        assert c.get("/v1/sessions/x").json()["memories"] == 1
        listed = c.get("/v1/memories", params={"session_id": "x"}).json()["data"]
        assert [m["id"] for m in listed] == [made["id"]]
        assert not raw.exists(LEGACY)
        assert 0 < raw.ttl(keys.session_memories("acme", "x")) <= 1000
        assert raw.type("hm:{t:acme}:session:y:memories") == "hash"

        raw.zadd(LEGACY, {"late": 1.0})
        assert _move(gateway.redis_url) == 0  # done once; the marker says so


def test_legacy_keys_parse_to_tenant_and_session() -> None:
    assert keys.parse_legacy_session_memories(LEGACY) == ("acme", "x")
    assert keys.parse_legacy_session_memories("hm:{t:a}:session:b:memories:memories") == (
        "a",
        "b:memories",
    )
    assert keys.parse_legacy_session_memories("hm:{t:a}:sessmem:b") is None
