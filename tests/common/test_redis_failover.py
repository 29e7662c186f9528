"""A primary SIGKILLed under load: callers see no error and no acknowledged write is lost.

Each drill prints its figures (interruption, retried operations) and writes them to
``var/bench/redis_failover_<topology>.json`` so they can be quoted; the fixture is healed
afterwards (the dead node restarts and rejoins as a replica) for the tests that follow.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from hivemind_common.redis import HivemindRedis, connect_redis
from support.redis_failover import DrillReport, failover_drill
from support.redis_servers import RedisProcess
from support.redis_topologies import RedisClusterSet, RedisSentinelSet, kill_process
from support.waiting import await_until

pytestmark = pytest.mark.slow

REPORT_DIR = Path(os.environ.get("HIVEMIND_BENCH_DIR", Path(__file__).parents[2] / "var" / "bench"))


def _record(report: DrillReport) -> None:
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    path = REPORT_DIR / f"redis_failover_{report.topology}.json"
    path.write_text(json.dumps(report.as_dict(), indent=2))
    print(f"\nredis failover drill ({report.topology}): {json.dumps(report.as_dict())}")


def _assert_nothing_lost(report: DrillReport) -> None:
    assert report.failed_operations == []
    assert report.missing_writes == []
    assert report.wrong_reads == 0
    assert report.writes_acknowledged > 0
    assert report.retried_operations > 0, "the kill should have made some operations retry"


@pytest.fixture
async def cluster_client(redis_cluster: RedisClusterSet) -> AsyncIterator[HivemindRedis]:
    redis_cluster.flush()
    client = connect_redis(redis_cluster.url)
    try:
        yield client
    finally:
        await client.aclose()
        redis_cluster.heal()


@pytest.fixture
async def sentinel_client(redis_sentinel: RedisSentinelSet) -> AsyncIterator[HivemindRedis]:
    redis_sentinel.ensure_whole()
    redis_sentinel.flush()
    client = connect_redis(redis_sentinel.url)
    try:
        yield client
    finally:
        await client.aclose()
        redis_sentinel.heal()


async def test_cluster_primary_killed_under_load_loses_no_acknowledged_write(
    redis_cluster: RedisClusterSet, cluster_client: HivemindRedis
) -> None:
    victim_tag = "{t:drill-a}"
    victim = redis_cluster.primary_for(f"hm:{victim_tag}:x")

    def kill() -> tuple[int, int]:
        return victim.port, kill_process(victim)

    report = await failover_drill(cluster_client, kill, victim_tag=victim_tag)
    _record(report)
    _assert_nothing_lost(report)
    assert redis_cluster.primary_for(f"hm:{victim_tag}:x").port != victim.port


async def test_sentinel_primary_killed_under_load_loses_no_acknowledged_write(
    redis_sentinel: RedisSentinelSet, sentinel_client: HivemindRedis
) -> None:
    victim = redis_sentinel.primary()

    def kill() -> tuple[int, int]:
        return victim.port, kill_process(victim)

    report = await failover_drill(sentinel_client, kill, victim_tag="{t:drill-a}")
    _record(report)
    _assert_nothing_lost(report)
    assert redis_sentinel.primary().port != victim.port


async def test_a_sentinel_switchover_is_followed_without_an_error(
    redis_sentinel: RedisSentinelSet, sentinel_client: HivemindRedis
) -> None:
    r = sentinel_client
    await r.set("hm:{t:a}:switch", "0")
    old = redis_sentinel.primary()
    with redis_sentinel.sentinels[0].client() as sentinel:
        assert sentinel.execute_command("SENTINEL", "FAILOVER", redis_sentinel.service)
    deadline = time.monotonic() + 30
    writes = 0
    address = getattr(r.backend, "address", None)
    while address is None or address[1] == old.port:  # every call must succeed meanwhile
        assert time.monotonic() < deadline, "the client never followed the switchover"
        writes += 1
        await r.set("hm:{t:a}:switch", str(writes))
        await r.get("hm:{t:a}:switch")
        address = getattr(r.backend, "address", None)
    assert address[1] == redis_sentinel.primary().port
    await r.set("hm:{t:a}:switch", "after")
    assert await r.get("hm:{t:a}:switch") == "after"


async def test_a_transaction_follows_its_slot_after_a_manual_cluster_failover(
    redis_cluster: RedisClusterSet, cluster_client: HivemindRedis
) -> None:
    r = cluster_client
    key = "hm:{t:moved}:x"
    await r.transaction(("SET", key, "before"), durable=True)  # slot map cached
    old = redis_cluster.primary_for(key)
    replica = next(
        n
        for n in redis_cluster.nodes
        if n is not old and _role_of(n) == "slave" and _replica_of(n) == old.port
    )
    with replica.client() as admin:
        assert admin.execute_command("CLUSTER", "FAILOVER")
    await await_until(
        _async(lambda: redis_cluster.primary_for(key).port == replica.port),
        timeout=30,
        what="the replica to take over",
    )
    result = await r.transaction(("SET", key, "after"), ("EXPIRE", key, 60), durable=True)
    assert list(result) == [True, True]
    assert await r.get(key) == "after"


def _role_of(node: RedisProcess) -> str:
    with node.client() as c:
        return str(c.execute_command("ROLE")[0])


def _replica_of(node: RedisProcess) -> int:
    with node.client() as c:
        return int(c.execute_command("ROLE")[2])


def _async(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def run() -> bool:
        return check()

    return run
