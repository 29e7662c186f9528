"""``?durability=strong``: a durable write no replica acknowledged is retried or refused with a
retryable 503, never returned as done (``available``, the default, returns it and counts it)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import pytest

from hivemind_common.error_handlers import from_redis_error
from hivemind_common.redis import HivemindRedis, RedisUnavailable, connect_redis
from hivemind_common.redis.policy import NotReplicated
from support.redis_topologies import RedisClusterSet, RedisSentinelSet

pytestmark = pytest.mark.slow


def _with(url: str, **options: object) -> str:
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return f"{url}{'&' if '?' in url else '?'}{query}"


@contextmanager
def _paused(group: RedisSentinelSet) -> Iterator[list[int]]:
    pids = [r.process.pid for r in group.replicas()]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield pids
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


@pytest.fixture
async def strong_sentinel(redis_sentinel_url: str) -> AsyncIterator[HivemindRedis]:
    client = connect_redis(
        _with(redis_sentinel_url, durability="strong", wait_timeout_ms=200, retry_deadline=2)
    )
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def strong_cluster(redis_cluster_url: str) -> AsyncIterator[HivemindRedis]:
    client = connect_redis(
        _with(redis_cluster_url, durability="strong", wait_timeout_ms=200, retry_deadline=1)
    )
    try:
        yield client
    finally:
        await client.aclose()


def test_the_url_names_the_durability() -> None:
    from hivemind_common.redis import parse_redis_url

    assert parse_redis_url("redis+cluster://h:1").durability == "available"
    assert parse_redis_url("redis+cluster://h:1?durability=strong").durability == "strong"
    with pytest.raises(Exception, match="durability must be"):
        parse_redis_url("redis+cluster://h:1?durability=maybe")


async def test_an_unreplicated_idempotent_write_is_retried_until_a_replica_has_it(
    strong_sentinel: HivemindRedis, redis_sentinel: RedisSentinelSet
) -> None:
    await strong_sentinel.initialize()
    with _paused(redis_sentinel):
        pending = asyncio.create_task(
            strong_sentinel.transaction(("SET", "hm:{t:a}:strong", "v"), durable=True)
        )
        await asyncio.sleep(0.5)  # a WAIT (200 ms) fell short at least once meanwhile
        assert not pending.done()
    result = await asyncio.wait_for(pending, timeout=10)
    assert result.acknowledged and result.replicas is not None and result.replicas >= 1
    assert strong_sentinel.stats.retried_operations == 1


async def test_an_unreplicated_counting_write_is_a_retryable_503_not_a_success(
    strong_sentinel: HivemindRedis, redis_sentinel: RedisSentinelSet
) -> None:
    await strong_sentinel.initialize()
    with _paused(redis_sentinel), pytest.raises(RedisUnavailable) as caught:
        await strong_sentinel.transaction(("INCR", "hm:{t:a}:n"), durable=True)
    err = caught.value
    assert err.status == 503 and err.code == "store_not_replicated"
    assert err.headers["Retry-After"] == "1"
    assert isinstance(err.__cause__, NotReplicated) and err.__cause__.applied
    assert strong_sentinel.stats.retried_operations == 0  # never repeated: it may have counted
    redis_sentinel.heal()


async def test_the_same_shortfall_returns_under_available_durability(
    redis_sentinel_url: str, redis_sentinel: RedisSentinelSet
) -> None:
    async with connect_redis(_with(redis_sentinel_url, wait_timeout_ms=200)) as r:
        await r.initialize()
        with _paused(redis_sentinel):
            result = await r.transaction(("INCR", "hm:{t:a}:n"), durable=True)
        assert list(result) == [1] and not result.acknowledged
    redis_sentinel.heal()


async def test_a_primary_without_enough_replicas_refuses_strong_writes_before_running_them(
    strong_cluster: HivemindRedis, redis_cluster: RedisClusterSet
) -> None:
    # Each cluster primary has one replica: two can never acknowledge.
    with pytest.raises(RedisUnavailable, match="not acknowledged by a replica"):
        await strong_cluster.transaction(("SET", "hm:{t:a}:x", "1"), durable=True, wait_replicas=2)
    # now the primary is known to be short: the next write is refused before it runs
    with pytest.raises(RedisUnavailable) as caught:
        await strong_cluster.transaction(("INCR", "hm:{t:a}:y"), durable=True, wait_replicas=2)
    assert isinstance(caught.value.__cause__, NotReplicated)
    assert not caught.value.__cause__.applied
    assert await strong_cluster.get("hm:{t:a}:y") is None
    # a write that one replica can acknowledge goes through on the same primary
    done = await strong_cluster.transaction(("SET", "hm:{t:a}:z", "1"), durable=True)
    assert done.acknowledged and done.replicas == 1


def test_a_raw_store_error_is_a_503_with_retry_after() -> None:
    import redis.exceptions as rex

    err = from_redis_error(rex.ConnectionError("gone"))
    assert err.status == 503 and err.headers.get("Retry-After") == "1"
