"""Durable transactions wait for a replica, within a bound, and never fail the write for it."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY

from hivemind_common.redis_client import HivemindRedis, connect_redis
from support.redis_topologies import RedisClusterSet, RedisSentinelSet

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
