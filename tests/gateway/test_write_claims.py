"""Write claims (``hivemind_gateway.claims``) against a real Redis: a claim is taken and read in
one step, a document's write lock is renewed while held and never drops another writer's."""

from __future__ import annotations

import asyncio

import pytest

from hivemind_common import keys
from hivemind_common.errors import Conflict
from hivemind_common.redis import connect_redis
from hivemind_gateway.claims import claim_digests, write_lock


def test_a_claim_is_ours_for_the_same_body_and_refused_for_another(redis_url: str) -> None:
    async def go() -> None:
        redis = connect_redis(redis_url)
        try:
            assert await claim_digests(redis, "acme", "memory", {"m1": "aaa", "m2": "bbb"}) == {}
            again = await claim_digests(redis, "acme", "memory", {"m1": "aaa", "m2": "ccc"})
            assert again == {"m2": "bbb"}
            # another tenant's id of the same name is another claim
            assert await claim_digests(redis, "other", "memory", {"m2": "ccc"}) == {}
        finally:
            await redis.aclose()

    asyncio.run(go())


def test_the_write_lock_is_renewed_while_held_and_only_ours_is_dropped(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keys, "WRITE_CLAIM_MS", 300)
    key = keys.write_claim("acme", "doc", "d1")

    async def go() -> None:
        redis = connect_redis(redis_url)
        try:
            async with write_lock(redis, "acme", "doc", "d1"):
                await asyncio.sleep(1.0)  # over three times the claim's life: renewed
                assert await redis.exists(key)
                with pytest.raises(Conflict):
                    async with write_lock(redis, "acme", "doc", "d1", wait_s=0.2):
                        pass
            assert not await redis.exists(key)
            async with write_lock(redis, "acme", "doc", "d1"):
                await redis.set(key, "someone-else")  # ours lapsed and another writer took it
            assert await redis.get(key) == "someone-else"
        finally:
            await redis.aclose()

    asyncio.run(go())


def test_a_release_that_fails_never_hides_the_writes_own_answer(redis_url: str) -> None:
    """Redis drops the connection as the lock is released: the block's own error (a quota
    refusal here) still reaches the caller, and the lock lapses on its own."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    from hivemind_common.errors import QuotaExceeded
    from hivemind_gateway import claims

    class Flaky:
        def __init__(self, inner: object) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> object:
            return getattr(self.inner, name)

        async def eval(self, script: str, *args: object) -> object:
            if script == claims._RELEASE:
                raise RedisConnectionError("connection lost")
            return await self.inner.eval(script, *args)  # type: ignore[attr-defined]

    async def go() -> None:
        redis = connect_redis(redis_url)
        try:
            with pytest.raises(QuotaExceeded):
                async with write_lock(Flaky(redis), "acme", "doc", "d2"):
                    raise QuotaExceeded("no room")
            async with write_lock(Flaky(redis), "acme", "doc", "d3"):
                pass  # a clean block ends cleanly too
        finally:
            await redis.aclose()

    asyncio.run(go())
