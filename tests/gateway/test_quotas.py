"""Per-tenant quotas: facts, memories and tool-cache bytes; updates within quota still work."""

from __future__ import annotations

from typing import Any

import redis as sync_redis

from hivemind_common import keys


def _limit(gateway: Any, tenant: str, **limits: int) -> None:
    r = sync_redis.Redis.from_url(gateway.redis_url, decode_responses=True)
    try:
        r.hset(keys.tenant_settings(tenant), mapping={k: str(v) for k, v in limits.items()})
    finally:
        r.close()


def _is_quota_refusal(resp: Any) -> bool:
    body = resp.json()
    code = body.get("code") or (body.get("error") or {}).get("code")
    return resp.status_code == 403 and code == "quota_exceeded"


def test_a_new_fact_past_the_quota_is_refused_and_an_update_still_works(gateway: Any) -> None:
    _limit(gateway, "acme", max_facts=2)
    with gateway.client("acme", "write") as c:
        assert c.put("/v1/facts/one", json={"value": "1"}).status_code in (200, 201)
        assert c.put("/v1/facts/two", json={"value": "2"}).status_code in (200, 201)
        third = c.put("/v1/facts/three", json={"value": "3"})
        assert _is_quota_refusal(third), third.text
        assert third.headers["content-type"].startswith("application/problem+json")
        assert c.put("/v1/facts/two", json={"value": "2b"}).status_code in (200, 201)
        assert c.get("/v1/facts/two").json()["value"] == "2b"
        assert c.get("/v1/facts/three").status_code == 404
        assert c.delete("/v1/facts/one").status_code in (200, 204)
        assert c.put("/v1/facts/three", json={"value": "3"}).status_code in (200, 201)
    with gateway.client("globex", "write") as other:  # one tenant's quota is its own
        for i in range(3):
            assert other.put(f"/v1/facts/f{i}", json={"value": "x"}).status_code in (200, 201)


def test_memories_past_the_quota_are_refused(gateway: Any) -> None:
    _limit(gateway, "acme", max_memories=1)
    with gateway.client("acme", "write") as c:
        assert c.post("/v1/memories", json={"text": "first"}).status_code == 201
        second = c.post("/v1/memories", json={"text": "second"})
        assert _is_quota_refusal(second), second.text
        assert c.get("/v1/memories").json()["count"] == 1


def test_a_new_session_past_the_quota_is_refused_and_a_live_one_still_updates(
    gateway: Any,
) -> None:
    _limit(gateway, "acme", max_sessions=2)
    with gateway.client("acme", "write") as c:
        assert c.post("/v1/sessions", json={"id": "s1", "context": "a"}).status_code == 201
        assert c.put("/v1/sessions/s2/context", json={"context": "b"}).status_code == 200
        third = c.post("/v1/sessions", json={"id": "s3"})
        assert _is_quota_refusal(third), third.text
        assert _is_quota_refusal(c.put("/v1/sessions/s4/context", json={"context": "d"}))
        assert c.put("/v1/sessions/s1/context", json={"context": "a2"}).status_code == 200
        assert c.get("/v1/sessions/s1").json()["context"] == "a2"


def test_a_session_context_is_bounded(gateway: Any) -> None:
    with gateway.client("acme", "write") as c:
        resp = c.put("/v1/sessions/big/context", json={"context": "x" * 200_001})
        assert resp.status_code in (400, 422), resp.text
        assert c.put("/v1/sessions/big/context", json={"context": "x" * 1000}).status_code == 200


def test_tool_cache_bytes_past_the_quota_are_refused_and_rewrites_fit(gateway: Any) -> None:
    _limit(gateway, "acme", max_cache_bytes=300)
    blob = "x" * 100
    with gateway.client("acme", "write") as c:
        assert c.put("/v1/cache/grep/aaa", json={"value": blob}).status_code == 200
        assert c.put("/v1/cache/grep/bbb", json={"value": blob}).status_code == 200
        third = c.put("/v1/cache/grep/ccc", json={"value": blob})
        assert _is_quota_refusal(third), third.text
        assert c.get("/v1/cache/grep/ccc").status_code == 404
        # rewriting an entry at its own size (or smaller) always fits
        assert c.put("/v1/cache/grep/bbb", json={"value": "y" * 100}).status_code == 200
        assert c.get("/v1/cache/grep/bbb").json()["value"] == "y" * 100
        assert c.put("/v1/cache/grep/aaa", json={"value": "small"}).status_code == 200
        assert c.put("/v1/cache/grep/ccc", json={"value": "z" * 50}).status_code == 200


def test_expired_cache_entries_stop_counting_against_the_quota(gateway: Any) -> None:
    _limit(gateway, "acme", max_cache_bytes=300)
    with gateway.client("acme", "write") as c:
        for name in ("aaa", "bbb"):
            assert c.put(f"/v1/cache/grep/{name}", json={"value": "x" * 120}).status_code == 200
        assert _is_quota_refusal(c.put("/v1/cache/grep/ccc", json={"value": "x" * 120}))
        r = sync_redis.Redis.from_url(gateway.redis_url, decode_responses=True)
        # as if both entries' TTLs had run out (their keys expire by Redis' own TTL)
        r.zadd(keys.tool_cache_expiry("acme"), {"grep:aaa": 1, "grep:bbb": 1})
        r.close()
        assert c.put("/v1/cache/grep/ccc", json={"value": "x" * 250}).status_code == 200


def test_racing_writers_never_pass_the_quota(gateway: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    _limit(gateway, "acme", max_facts=5, max_memories=3)
    with gateway.client("acme", "write") as c:

        def put(i: int) -> int:
            return c.put(f"/v1/facts/race-{i}", json={"value": str(i)}).status_code

        def post(i: int) -> int:
            return c.post("/v1/memories", json={"text": f"memory {i}"}).status_code

        with ThreadPoolExecutor(max_workers=12) as pool:
            facts = list(pool.map(put, range(24)))
            memories = list(pool.map(post, range(12)))
        assert sum(s in (200, 201) for s in facts) == 5 and facts.count(403) == 19
        assert sum(s == 201 for s in memories) == 3 and memories.count(403) == 9
        assert c.get("/v1/facts").json()["count"] == 5
        assert c.get("/v1/memories").json()["count"] == 3
        # nothing stays reserved once the writes are done
        r = sync_redis.Redis.from_url(gateway.redis_url)
        assert r.zcard(keys.quota_reservations("acme", "facts")) == 0
        r.close()


def test_a_batch_that_would_pass_the_memory_quota_is_refused_item_by_item(gateway: Any) -> None:
    """Items are admitted in order up to the quota and each one past it is refused, as the
    same items sent one by one would be (the whole chunk was refused before)."""
    _limit(gateway, "acme", max_memories=2)
    with gateway.client("acme", "write") as c:
        three = [{"text": f"batch memory {i}"} for i in range(3)]
        partial = c.post("/v1/memories/batch", json={"memories": three}).json()
        assert (partial["stored"], partial["failed"]) == (2, 1)
        assert [r["error"] is None for r in partial["results"]] == [True, True, False]
        assert partial["results"][2]["error"]["code"] == "quota_exceeded"
        full = c.post("/v1/memories/batch", json={"memories": [{"text": "one more"}]}).json()
        assert (full["stored"], full["failed"]) == (0, 1)
        assert c.get("/v1/memories").json()["count"] == 2
    r = sync_redis.Redis.from_url(gateway.redis_url)
    assert r.zcard(keys.quota_reservations("acme", "memories")) == 0
    r.close()


def test_memories_cannot_open_sessions_past_the_quota(gateway: Any) -> None:
    """A memory names its session, which the write creates: a new one past ``max_sessions``
    is refused like a new session is, on the single route and item by item in a batch."""
    _limit(gateway, "acme", max_sessions=2)
    with gateway.client("acme", "write") as c:
        assert c.post("/v1/memories", json={"text": "a", "session_id": "s1"}).status_code == 201
        assert c.put("/v1/sessions/s2/context", json={"context": "b"}).status_code == 200
        refused = c.post("/v1/memories", json={"text": "c", "session_id": "s3"})
        assert _is_quota_refusal(refused), refused.text
        # a live session still takes memories, and a memory with no session is no session
        assert c.post("/v1/memories", json={"text": "d", "session_id": "s2"}).status_code == 201
        assert c.post("/v1/memories", json={"text": "e"}).status_code == 201
        batch = c.post(
            "/v1/memories/batch",
            json={
                "memories": [
                    {"text": "f", "session_id": "s1"},
                    {"text": "g", "session_id": "s4"},
                    {"text": "h"},
                    {"text": "i", "session_id": "s5"},
                ]
            },
        )
        assert batch.status_code == 200, batch.text
        results = batch.json()["results"]
        assert [r["error"] is None for r in results] == [True, False, True, False]
        assert all(r["error"]["code"] == "quota_exceeded" for r in results if r["error"])
        assert c.get("/v1/sessions").json()["count"] == 2
        assert c.get("/v1/memories").json()["count"] == 5


def test_a_batch_opens_new_sessions_while_there_is_room(gateway: Any) -> None:
    _limit(gateway, "acme", max_sessions=3)
    with gateway.client("acme", "write") as c:
        items = [{"text": f"m{n}", "session_id": f"s{n % 3}"} for n in range(9)]
        batch = c.post("/v1/memories/batch", json={"memories": items})
        assert batch.json()["stored"] == 9, batch.text
        assert c.get("/v1/sessions").json()["count"] == 3
        more = c.post("/v1/memories/batch", json={"memories": [{"text": "x", "session_id": "s9"}]})
        assert more.json()["failed"] == 1


def test_a_batch_admits_as_many_new_sessions_as_there_is_room_for(gateway: Any) -> None:
    _limit(gateway, "acme", max_sessions=3)
    with gateway.client("acme", "write") as c:
        assert c.put("/v1/sessions/s1/context", json={"context": "a"}).status_code == 200
        items = [
            {"text": "x", "session_id": "s2"},
            {"text": "y", "session_id": "s3"},
            {"text": "z", "session_id": "s4"},
            {"text": "w", "session_id": "s2"},
            {"text": "v", "session_id": "s1"},
        ]
        results = c.post("/v1/memories/batch", json={"memories": items}).json()["results"]
        assert [r["error"] is None for r in results] == [True, True, False, True, True]
        assert c.get("/v1/sessions").json()["count"] == 3


def test_a_refused_memory_gives_its_reserved_place_back_at_once(gateway: Any) -> None:
    """A memory whose new session has no room is refused; the place the memory itself had
    reserved is given back now, not 30 s later (which refused other writes meanwhile)."""
    _limit(gateway, "acme", max_sessions=1, max_memories=2)
    with gateway.client("acme", "write") as c:
        assert c.post("/v1/memories", json={"text": "a", "session_id": "s1"}).status_code == 201
        refused = c.post("/v1/memories", json={"text": "b", "session_id": "s2"})
        assert _is_quota_refusal(refused), refused.text
        # the memory quota has one place left, and it is free
        assert c.post("/v1/memories", json={"text": "c"}).status_code == 201
    r = sync_redis.Redis.from_url(gateway.redis_url, decode_responses=True)
    try:
        assert r.zcard(keys.quota_reservations("acme", "memories")) == 0
    finally:
        r.close()


def test_concurrent_new_sessions_never_pass_the_quota(gateway: Any) -> None:
    """The quota check and the session write are one script: ten new sessions at once, three
    places, exactly three stored."""
    import asyncio

    import httpx

    _limit(gateway, "acme", max_sessions=3)
    headers = {"Authorization": f"Bearer {gateway.key()}"}

    async def race() -> list[int]:
        async with httpx.AsyncClient(base_url=gateway.url, headers=headers, timeout=60) as c:
            answers = await asyncio.gather(
                *(c.put(f"/v1/sessions/n{i}/context", json={"context": "x"}) for i in range(10))
            )
        return [a.status_code for a in answers]

    statuses = asyncio.run(race())
    assert sorted(statuses) == [200] * 3 + [403] * 7
    with gateway.client("acme", "write") as c:
        assert c.get("/v1/sessions").json()["count"] == 3


def test_a_retried_memory_does_not_bring_its_expired_session_back(gateway: Any) -> None:
    """The retry of a stored memory writes the memory again, not its session: a session that
    expired since stays gone (it used to come back, past ``max_sessions``)."""
    _limit(gateway, "acme", max_sessions=1)
    body = {"id": "m1", "text": "kept", "session_id": "s1"}
    with gateway.client("acme", "write") as c:
        assert c.post("/v1/memories", json=body).status_code == 201
        r = sync_redis.Redis.from_url(gateway.redis_url, decode_responses=True)
        try:  # s1 expires
            r.delete(keys.session("acme", "s1"), keys.session_memories("acme", "s1"))
            r.zrem(keys.sessions_recent("acme"), "s1")
        finally:
            r.close()
        assert c.put("/v1/sessions/s2/context", json={"context": "b"}).status_code == 200
        assert c.post("/v1/memories", json=body).status_code == 201  # the retry
        listed = c.get("/v1/sessions").json()
        assert listed["count"] == 1 and listed["data"][0]["id"] == "s2"


def test_expired_sessions_stop_counting_against_the_session_quota(gateway: Any) -> None:
    """A session not written for 30 days has expired; its entry in the tenant's index was only
    dropped by the next write to some session, which the quota refused first: a tenant at its
    limit whose sessions had all expired could open no new one."""
    import time

    _limit(gateway, "acme", max_sessions=1)
    with gateway.client("acme", "write") as c:
        assert c.put("/v1/sessions/old/context", json={"context": "x"}).status_code == 200
        refused = c.put("/v1/sessions/new/context", json={"context": "y"})
        assert _is_quota_refusal(refused), refused.text
        r = sync_redis.Redis.from_url(gateway.redis_url)
        try:  # thirty days and a minute later: Redis dropped the session, the index kept it
            stale = time.time() - keys.SESSION_TTL_S - 60
            r.zadd(keys.sessions_recent("acme"), {"old": stale})
            r.delete(keys.session("acme", "old"))
        finally:
            r.close()
        assert c.put("/v1/sessions/new/context", json={"context": "y"}).status_code == 200
        assert c.post("/v1/memories", json={"text": "z", "session_id": "third"}).status_code == 403


def test_a_batch_naming_an_expired_session_counts_it_as_new(gateway: Any) -> None:
    import time

    _limit(gateway, "acme", max_sessions=2)
    with gateway.client("acme", "write") as c:
        for sid in ("a", "b"):
            assert c.put(f"/v1/sessions/{sid}/context", json={"context": sid}).status_code == 200
        r = sync_redis.Redis.from_url(gateway.redis_url)
        try:  # "a" expired a minute ago (the index still names it)
            r.zadd(keys.sessions_recent("acme"), {"a": time.time() - keys.SESSION_TTL_S - 60})
            items = [{"text": "x", "session_id": "a"}, {"text": "y", "session_id": "c"}]
            body = c.post("/v1/memories/batch", json={"memories": items}).json()
            assert [res["error"] is None for res in body["results"]] == [True, False]
            assert body["results"][1]["error"]["code"] == "quota_exceeded"
            live = r.zrangebyscore(keys.sessions_recent("acme"), time.time() - 3600, "+inf")
            assert sorted(m.decode() for m in live) == ["a", "b"]  # never three
        finally:
            r.close()
