"""Durable transactions wait for a replica, within a bound, and never fail the write for it."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import pytest
import redis
from prometheus_client import REGISTRY

from hivemind_common.errors import Unavailable
from hivemind_common.redis import HivemindRedis, connect_redis
from support.redis_topologies import RedisClusterSet, RedisSentinelSet
from support.waiting import await_until

pytestmark = pytest.mark.slow


def _shortfalls(topology: str) -> float:
    value = REGISTRY.get_sample_value("hivemind_redis_wait_shortfall_total", {"topology": topology})
    return value or 0.0


@pytest.fixture
async def sentinel(redis_sentinel_url: str) -> AsyncIterator[HivemindRedis]:
    client = connect_redis(redis_sentinel_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def cluster(redis_cluster_url: str) -> AsyncIterator[HivemindRedis]:
    client = connect_redis(redis_cluster_url)
    try:
        yield client
    finally:
        await client.aclose()


async def test_durable_write_reaches_a_replica_before_it_returns(
    sentinel: HivemindRedis, redis_sentinel: RedisSentinelSet
) -> None:
    result = await sentinel.transaction(("HSET", "hm:{t:a}:fact:k", "value", "v1"), durable=True)
    assert result.replicas is not None and result.replicas >= 1
    assert 0 <= result.wait_ms < 500
    # the acknowledging replica already holds it: read it there, no waiting
    held = [r.client().hget("hm:{t:a}:fact:k", "value") for r in redis_sentinel.replicas()]
    assert "v1" in held


async def test_durable_write_with_replicas_paused_returns_within_the_bound_without_raising(
    sentinel: HivemindRedis, redis_sentinel: RedisSentinelSet
) -> None:
    await sentinel.ping()
    replicas = redis_sentinel.replicas()
    before = _shortfalls("sentinel")
    for r in replicas:
        os.kill(r.process.pid, signal.SIGSTOP)
    try:
        started = time.perf_counter()
        result = await sentinel.transaction(
            ("SET", "hm:{t:a}:fact:paused", "1"), durable=True, wait_timeout_ms=200
        )
        elapsed = time.perf_counter() - started
    finally:
        for r in replicas:
            os.kill(r.process.pid, signal.SIGCONT)
    assert list(result) == [True]
    assert result.replicas == 0 and not result.acknowledged
    assert 0.2 <= elapsed < 2.0
    assert _shortfalls("sentinel") == before + 1
    assert await sentinel.get("hm:{t:a}:fact:paused") == "1"
    redis_sentinel.heal()


async def test_a_primary_short_of_replicas_is_not_waited_on_again_right_away(
    cluster: HivemindRedis, redis_cluster: RedisClusterSet
) -> None:
    # Each cluster primary has one replica; asking for two can never be met.
    first = await cluster.transaction(
        ("SET", "hm:{t:a}:x", "1"), durable=True, wait_replicas=2, wait_timeout_ms=200
    )
    assert first.replicas == 1 and not first.acknowledged
    assert first.wait_ms >= 190
    started = time.perf_counter()
    second = await cluster.transaction(
        ("SET", "hm:{t:a}:y", "1"), durable=True, wait_replicas=2, wait_timeout_ms=200
    )
    assert time.perf_counter() - started < 0.15
    assert second.replicas == 0 and not second.acknowledged
    # a primary with enough replicas is still waited on
    third = await cluster.transaction(("SET", "hm:{t:a}:z", "1"), durable=True)
    assert third.replicas == 1 and third.acknowledged


async def test_plain_transactions_do_not_wait(cluster: HivemindRedis) -> None:
    result = await cluster.transaction(("SET", "hm:{t:a}:plain", "1"))
    assert result.replicas is None and result.acknowledged


async def _blocked_in_wait(admin: redis.Redis) -> int:
    async def waiting() -> int:
        return next((int(c["id"]) for c in admin.client_list() if c.get("cmd") == "wait"), 0)

    return await await_until(waiting, timeout=10, what="a connection blocked in WAIT")


@contextmanager
def _replicas_stopped(group: RedisSentinelSet) -> Iterator[None]:
    replicas = group.replicas()
    for r in replicas:
        os.kill(r.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for r in replicas:
            os.kill(r.process.pid, signal.SIGCONT)


async def test_an_idempotent_transaction_cut_off_after_it_ran_is_retried_to_the_same_state(
    sentinel: HivemindRedis, redis_sentinel: RedisSentinelSet
) -> None:
    await sentinel.initialize()
    stream, key = "hm:{t:a}:changes", "hm:{t:a}:fact:cut"
    with redis_sentinel.primary().client() as admin:
        with _replicas_stopped(redis_sentinel):
            pending = asyncio.create_task(
                sentinel.transaction(
                    ("XADD", stream, "5-1", "op", "put"),
                    ("SET", key, "v"),
                    durable=True,
                    wait_timeout_ms=3000,
                )
            )
            admin.client_kill_filter(_id=await _blocked_in_wait(admin))  # EXEC ran, WAIT cut
        result = await asyncio.wait_for(pending, timeout=15)
        assert list(result) == ["5-1", True]  # the repeated XADD found its entry in place
        assert admin.xlen(stream) == 1
    assert sentinel.stats.retried_operations == 1
    redis_sentinel.heal()


async def test_a_counting_transaction_cut_off_after_it_ran_is_not_repeated(
    sentinel: HivemindRedis, redis_sentinel: RedisSentinelSet
) -> None:
    await sentinel.initialize()
    key = "hm:{t:a}:count"
    with redis_sentinel.primary().client() as admin:
        with _replicas_stopped(redis_sentinel):
            pending = asyncio.create_task(
                sentinel.transaction(("INCR", key), durable=True, wait_timeout_ms=3000)
            )
            admin.client_kill_filter(_id=await _blocked_in_wait(admin))
            with pytest.raises(Unavailable, match="may or may not have been applied"):
                await asyncio.wait_for(pending, timeout=15)
        assert admin.get(key) == "1"  # ran once, not twice
    assert sentinel.stats.retried_operations == 0
    redis_sentinel.heal()
