"""A running job's claim is refreshed through Redis errors (the exporter's heartbeat once died on
its first one, and a long export was reclaimed and run twice)."""

from __future__ import annotations

import asyncio

from redis.exceptions import ConnectionError as RedisConnectionError

from hivemind_common.dead_letters import keep_claimed


class FlakyRedis:
    def __init__(self) -> None:
        self.calls = 0

    async def xclaim(self, *args: object, **kwargs: object) -> list[str]:
        self.calls += 1
        if self.calls == 1:
            raise RedisConnectionError("failing over")
        return ["1-0"]


async def test_the_claim_is_refreshed_after_a_redis_error() -> None:
    redis = FlakyRedis()
    beat = asyncio.create_task(keep_claimed(redis, "s", "g", "c", "1-0", interval_s=0.01))
    deadline = asyncio.get_running_loop().time() + 30
    while redis.calls < 3 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    assert not beat.done()  # still beating after the error
    beat.cancel()
    assert redis.calls >= 3
