"""Requests counted in one turn of the event loop share one Redis round trip, and each still
takes its own place in the window (issue 17)."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis as sync_redis

from hivemind_common import keys
from hivemind_common.auth import Principal
from hivemind_common.errors import TooManyRequests
from hivemind_common.redis import RedisUnavailable, connect_redis
from hivemind_gateway.limits import RequestLimiter


def _incrby_calls(redis_url: str) -> int:
    stats = sync_redis.Redis.from_url(redis_url).info("commandstats")
    return int(stats.get("cmdstat_incrby", {}).get("calls", 0))


async def _outcomes(limiter: RequestLimiter, principals: list[Principal]) -> list[str]:
    async def one(p: Principal) -> str:
        try:
            await limiter.check(p)
            return "ok"
        except TooManyRequests:
            return "429"

    return list(await asyncio.gather(*(one(p) for p in principals)))


async def test_a_burst_in_one_turn_is_one_round_trip_and_exactly_the_rate_passes(
    redis_url: str,
) -> None:
    redis = connect_redis(redis_url)
    try:
        limiter = RequestLimiter(redis, default_key_rpm=5, max_inference_per_tenant=0)
        key = Principal(key_id="k1", tenant="acme", role="read")
        other = Principal(key_id="k2", tenant="acme", role="read", rpm=100)
        sync_redis.Redis.from_url(redis_url).config_resetstat()
        outcomes = await _outcomes(limiter, [key] * 8 + [other] * 3)
        # one INCRBY for each counter (two keys, one tenant), not one per request
        assert _incrby_calls(redis_url) == 3
        assert outcomes[:8].count("ok") == 5 and outcomes[:8].count("429") == 3
        assert outcomes[:5] == ["ok"] * 5  # places are handed out in arrival order
        assert outcomes[8:] == ["ok"] * 3
        window = int(time.time() // keys.RATE_WINDOW_S)
        plain = sync_redis.Redis.from_url(redis_url, decode_responses=True)
        counts = {
            int(plain.get(keys.key_request_window("k1", w)) or 0) for w in (window, window - 1)
        }
        assert 8 in counts  # every request counted, the refused ones too (as before)
    finally:
        await redis.aclose()


async def test_a_tenants_rate_counts_every_key_of_one_turn_together(redis_url: str) -> None:
    sync_redis.Redis.from_url(redis_url).hset(keys.tenant_settings("globex"), "rpm", "4")
    redis = connect_redis(redis_url)
    try:
        limiter = RequestLimiter(redis, default_key_rpm=0, max_inference_per_tenant=0)
        principals = [Principal(key_id=f"g{i}", tenant="globex", role="read") for i in range(6)]
        outcomes = await _outcomes(limiter, principals)
        assert outcomes == ["ok"] * 4 + ["429"] * 2
    finally:
        await redis.aclose()


async def test_a_failing_round_trip_fails_every_request_of_its_turn(redis_url: str) -> None:
    redis = connect_redis("redis://127.0.0.1:1/0?retry_deadline=0.2")
    try:
        limiter = RequestLimiter(redis, default_key_rpm=5, max_inference_per_tenant=0)
        key = Principal(key_id="k1", tenant="acme", role="read")
        results = await asyncio.gather(
            *(limiter.check(key) for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, RedisUnavailable) for r in results), results
        with pytest.raises(RedisUnavailable):  # and the next turn tries again
            await limiter.check(key)
    finally:
        await redis.aclose()
