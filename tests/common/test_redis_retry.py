"""The retry policy at work on a real server: what is repeated, what reaches the caller."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis
from redis import exceptions as rex

from hivemind_common.errors import Unavailable
from hivemind_common.redis import HivemindRedis, connect_redis
from support.redis_servers import start_redis
from support.waiting import await_until


@pytest.fixture
async def r(redis_url: str) -> AsyncIterator[HivemindRedis]:
    client = connect_redis(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def _blocked_in(admin: redis.Redis, command: str, *, besides: int = 0) -> int:
    """Wait for a connection blocked in ``command`` (other than ``besides``); its client id."""

    async def running() -> int:
        for c in admin.client_list():
            if c.get("cmd") == command and int(c["id"]) != besides:
                return int(c["id"])
        return 0

    return await await_until(running, timeout=10, what=f"a client blocked in {command}")


async def test_even_a_counting_command_is_retried_while_the_server_refuses_connections(
    tmp_path: Path,
) -> None:
    server = start_redis(tmp_path / "r")
    r = connect_redis(server.url)
    try:
        server.stop()  # before the first command: every connection attempt is refused
        pending = asyncio.create_task(r.incr("hm:{t:a}:counter"))

        async def retrying() -> bool:
            return r.stats.retries >= 2

        await await_until(retrying, timeout=10, what="INCR retried against the stopped server")
        restarted = start_redis(tmp_path / "r", port=server.port)
        try:
            assert await asyncio.wait_for(pending, timeout=15) == 1
            assert r.stats.retried_operations == 1
            assert await r.get("hm:{t:a}:counter") == "1"  # applied exactly once
        finally:
            restarted.stop()
    finally:
        await r.aclose()


async def test_a_non_idempotent_command_cut_off_mid_flight_reaches_the_caller(
    r: HivemindRedis, redis_url: str
) -> None:
    admin = redis.Redis.from_url(redis_url, decode_responses=True)
    pending = asyncio.create_task(r.blpop(["hm:{t:a}:queue"], timeout=3))
    client_id = await _blocked_in(admin, "blpop")
    admin.client_kill_filter(_id=client_id)
    with pytest.raises(Unavailable, match="may or may not have been applied") as info:
        await asyncio.wait_for(pending, timeout=10)
    assert isinstance(info.value.__cause__, rex.ConnectionError)
    assert r.stats.retried_operations == 0
    admin.close()


async def test_an_idempotent_read_cut_off_mid_flight_is_retried_and_answers(
    r: HivemindRedis, redis_url: str
) -> None:
    admin = redis.Redis.from_url(redis_url, decode_responses=True)
    stream = "hm:{t:a}:events"
    pending = asyncio.create_task(r.xread({stream: "0-0"}, block=3000))
    first = await _blocked_in(admin, "xread")
    admin.client_kill_filter(_id=first)
    await _blocked_in(admin, "xread", besides=first)  # the retry is blocked again
    entry_id = admin.xadd(stream, {"n": "1"})
    got = await asyncio.wait_for(pending, timeout=10)
    assert got[0][1][0][0] == entry_id
    assert r.stats.retried_operations == 1
    admin.close()


async def test_errors_that_no_failover_explains_are_not_retried(r: HivemindRedis) -> None:
    await r.set("hm:{t:a}:s", "text")
    with pytest.raises(rex.ResponseError, match="WRONGTYPE"):
        await r.hget("hm:{t:a}:s", "f")
    assert r.stats.retried_operations == 0


async def test_a_server_that_stays_away_ends_in_unavailable_after_the_deadline(
    tmp_path: Path,
) -> None:
    server = start_redis(tmp_path / "gone")
    server.stop()
    r = connect_redis(f"redis://127.0.0.1:{server.port}/0?retry_deadline=0.3")
    try:
        with pytest.raises(Unavailable, match="still failing"):
            await r.get("hm:{t:a}:x")
        assert r.stats.failed_operations == 1
    finally:
        await r.aclose()


async def test_a_pipeline_of_reads_cut_off_mid_flight_is_replayed(
    r: HivemindRedis, redis_url: str
) -> None:
    admin = redis.Redis.from_url(redis_url, decode_responses=True)
    stream = "hm:{t:a}:piped"
    async with r.pipeline() as pipe:
        pipe.get("hm:{t:a}:nothing")
        pipe.xread({stream: "0-0"}, block=3000)
        pending = asyncio.create_task(pipe.execute())
        first = await _blocked_in(admin, "xread")
        admin.client_kill_filter(_id=first)
        await _blocked_in(admin, "xread", besides=first)
        entry_id = admin.xadd(stream, {"n": "1"})
        nothing, got = await asyncio.wait_for(pending, timeout=10)
    assert nothing is None
    assert got[0][1][0][0] == entry_id
    assert r.stats.retried_operations == 1
    admin.close()
