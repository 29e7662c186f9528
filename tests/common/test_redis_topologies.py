"""The connector gives callers the same behaviour on standalone, Cluster and Sentinel."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from hivemind_common.errors import Invalid, Unavailable
from hivemind_common.redis import HivemindRedis, connect_redis

pytestmark = pytest.mark.slow


@pytest.fixture(params=["standalone", "cluster", "sentinel"])
def topology_url(request: pytest.FixtureRequest) -> str:
    """The URL of a freshly flushed deployment of each topology."""
    name = {"standalone": "redis_url", "cluster": "redis_cluster_url"}
    return str(request.getfixturevalue(name.get(request.param, "redis_sentinel_url")))


@pytest.fixture
async def r(topology_url: str) -> AsyncIterator[HivemindRedis]:
    client = connect_redis(topology_url)
    try:
        yield client
    finally:
        await client.aclose()


async def test_commands_read_and_write_the_same_way_on_every_topology(r: HivemindRedis) -> None:
    assert await r.ping()
    await r.set("hm:{t:a}:fact:x", "1")
    await r.hset("hm:{t:a}:mem:1", mapping={"text": "hello", "n": "2"})
    await r.zadd("hm:{t:a}:idx", {"a": 0, "b": 0, "c": 0})
    await r.sadd("hm:{t:b}:tags", "x", "y")

    assert await r.get("hm:{t:a}:fact:x") == "1"
    assert await r.hgetall("hm:{t:a}:mem:1") == {"text": "hello", "n": "2"}
    assert await r.zrangebylex("hm:{t:a}:idx", "[b", "+") == ["b", "c"]
    assert await r.smembers("hm:{t:b}:tags") == {"x", "y"}
    assert await r.delete("hm:{t:a}:fact:x") == 1
    assert await r.get("hm:{t:a}:fact:x") is None


async def test_transaction_applies_all_commands_and_returns_shaped_replies(
    r: HivemindRedis,
) -> None:
    result = await r.transaction(
        ("HSET", "hm:{t:a}:k", "f", "v", "g", "w"),
        ("SADD", "hm:{t:a}:set", "k"),
        ("EXPIRE", "hm:{t:a}:k", 60),
        ("HGETALL", "hm:{t:a}:k"),
    )
    assert list(result) == [2, 1, True, {"f": "v", "g": "w"}]
    assert result.replicas is None
    assert 0 < await r.ttl("hm:{t:a}:k") <= 60


async def test_transaction_keys_in_two_slots_are_refused_before_any_write(
    r: HivemindRedis,
) -> None:
    with pytest.raises(Invalid, match="one hash slot"):
        await r.transaction(("SET", "hm:{t:a}:x", "1"), ("SET", "hm:{t:b}:x", "1"))
    assert await r.exists("hm:{t:a}:x") == 0


async def test_a_script_in_a_transaction_runs_where_its_keys_live(r: HivemindRedis) -> None:
    """A script's slot is its declared keys' (not its text's), on every topology; a script whose
    keys span slots is refused like any other transaction."""
    from hivemind_gateway.quotas import write_within_quota

    replies = await write_within_quota(
        r,
        tenant="a",
        kind="sessions",
        index_key="hm:{t:a}:sessions",
        member="s1",
        commands=[
            ("HSET", "hm:{t:a}:session:s1", "context", "x"),
            ("HGETALL", "hm:{t:a}:session:s1"),
        ],
    )
    assert replies == [1, ["context", "x"]]
    with pytest.raises(Invalid, match="one hash slot"):
        await r.transaction(("EVAL", "return 1", 2, "hm:{t:a}:x", "hm:{t:b}:x"))


async def test_a_command_error_inside_a_transaction_reaches_the_caller(r: HivemindRedis) -> None:
    await r.set("hm:{t:a}:str", "text")
    with pytest.raises(Exception, match="WRONGTYPE"):
        await r.transaction(("HSET", "hm:{t:a}:str", "f", "v"))


async def test_streams_with_consumer_groups_work_on_every_topology(r: HivemindRedis) -> None:
    stream = "hm:{learn}:samples"
    await r.xgroup_create(stream, "trainer", id="0", mkstream=True)
    ids = [await r.xadd(stream, {"n": str(i)}) for i in range(3)]
    got = await r.xreadgroup("trainer", "c1", {stream: ">"}, count=10)
    assert [entry_id for entry_id, _ in got[0][1]] == ids
    assert await r.xack(stream, "trainer", *ids) == 3
    explicit = await r.transaction(("XADD", stream, "9999999999999-1", "n", "x"))
    assert explicit[0] == "9999999999999-1"


async def test_binary_twin_keeps_bytes_and_shares_the_topology(r: HivemindRedis) -> None:
    vector = bytes(range(256))
    raw = r.binary()
    assert raw is r.binary()
    assert raw.topology == r.topology
    await raw.set("hm:{t:a}:vec", vector)
    assert await raw.get("hm:{t:a}:vec") == vector
    assert isinstance(await r.get("hm:{t:a}:missing") or "", str)


async def test_pipeline_batches_reads(r: HivemindRedis) -> None:
    await r.set("hm:{t:a}:p1", "1")
    await r.set("hm:{t:a}:p2", "2")
    async with r.pipeline(transaction=False) as pipe:
        pipe.get("hm:{t:a}:p1")
        pipe.get("hm:{t:a}:p2")
        assert await pipe.execute() == ["1", "2"]


async def test_durable_transaction_is_acknowledged_by_a_replica_where_there_is_one(
    r: HivemindRedis,
) -> None:
    result = await r.transaction(("SET", "hm:{t:a}:durable", "1"), durable=True)
    if r.topology == "standalone":
        assert result.replicas is None  # no replica to wait for: WAIT is skipped
    else:
        assert result.replicas is not None and result.replicas >= 1
        assert result.acknowledged


async def test_initialize_finds_the_primary_up_front_so_raw_is_usable(r: HivemindRedis) -> None:
    assert await r.initialize() is r
    assert await r.raw.ping()


def test_sentinel_raw_before_any_command_asks_to_initialize(redis_sentinel_url: str) -> None:
    r = connect_redis(redis_sentinel_url)
    with pytest.raises(Unavailable, match="initialize"):
        _ = r.raw


async def test_helpers_that_are_not_commands_answer_without_await(
    redis_cluster_url: str,
) -> None:
    async with connect_redis(redis_cluster_url) as r:
        await r.initialize()
        assert r.keyslot("hm:{t:a}:x") == r.keyslot("{t:a}")


async def test_scan_iter_sees_keys_on_every_primary(r: HivemindRedis) -> None:
    names = {f"hm:{{t:{i}}}:scan" for i in range(20)}
    for name in names:
        await r.set(name, "1")
    found = {k async for k in r.scan_iter(match="hm:*:scan", count=100)}
    assert found == names


async def test_sentinel_pipeline_works_before_any_other_command(redis_sentinel_url: str) -> None:
    r = connect_redis(redis_sentinel_url)
    try:
        async with r.pipeline() as pipe:
            pipe.set("hm:{t:a}:p", "1").get("hm:{t:a}:p")
            assert len(pipe) == 2
            assert await pipe.execute() == [True, "1"]
    finally:
        await r.aclose()
