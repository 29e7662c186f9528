"""The orchestrator's rule and the leader lease."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from hivemind_common import keys
from hivemind_trainer.orchestrator import LeaderLock, LeadershipLost, decide
from support.waiting import await_until

RULE = dict(threshold=100, min_interval_s=3600.0, backoff_base_s=600.0, backoff_max_s=21600.0)


def test_it_trains_only_with_enough_new_samples_and_time_since_the_last_attempt() -> None:
    now = 100_000.0
    assert not decide(
        now=now, new_samples=99, last_attempt_at=0, failures=0, last_failure_at=0, **RULE
    ).train
    assert decide(
        now=now, new_samples=100, last_attempt_at=0, failures=0, last_failure_at=0, **RULE
    ).train
    recent = decide(
        now=now, new_samples=500, last_attempt_at=now - 60, failures=0, last_failure_at=0, **RULE
    )
    assert not recent.train and "last attempt" in recent.reason


def test_failures_back_off_exponentially_up_to_a_cap() -> None:
    now = 1_000_000.0
    args = dict(now=now, new_samples=200, last_attempt_at=0, **RULE)
    assert not decide(failures=1, last_failure_at=now - 599, **args).train  # type: ignore[arg-type]
    assert decide(failures=1, last_failure_at=now - 601, **args).train  # type: ignore[arg-type]
    assert not decide(failures=3, last_failure_at=now - 2000, **args).train  # 2400 s wait  # type: ignore[arg-type]
    assert decide(failures=30, last_failure_at=now - 21601, **args).train  # capped  # type: ignore[arg-type]


async def test_one_leader_at_a_time_and_only_the_owner_renews_or_releases(redis_client) -> None:
    a, b = LeaderLock(redis_client, "a", ttl_ms=5000), LeaderLock(redis_client, "b", ttl_ms=5000)
    assert await a.acquire()
    assert not await b.acquire()
    assert not await b.renew()
    await b.release()  # not b's to release
    assert await a.holder() == "a"
    assert await a.renew()
    await a.release()
    assert await b.acquire() and await b.holder() == "b"


class _FlakyRedis:
    """The real client, except that scripts fail while ``down`` (Redis unreachable)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.down = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    async def eval(self, *args: Any) -> Any:
        if self.down:
            raise RedisConnectionError("connection refused (injected)")
        return await self.real.eval(*args)


async def test_renewal_errors_are_retried_and_a_lease_not_renewed_for_a_ttl_counts_as_lost(
    redis_client,
) -> None:
    flaky = _FlakyRedis(redis_client)
    lock = LeaderLock(flaky, "a", ttl_ms=600)
    assert await lock.acquire()
    lock.raise_if_lapsed()  # freshly taken: holds
    renewer = asyncio.create_task(lock.keep_renewed())
    try:
        flaky.down = True

        async def lapsed() -> bool:
            return lock.lapsed

        await await_until(lapsed, timeout=30, what="the lease to lapse")
        with pytest.raises(LeadershipLost):
            lock.raise_if_lapsed()
        await await_until(_after_two_renewals(lock), timeout=30, what="more renewals")
        assert not renewer.done()  # errors never killed the renewer
    finally:
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewer


def _after_two_renewals(lock: LeaderLock) -> Any:
    start = time.monotonic()

    async def waited() -> bool:
        return time.monotonic() - start > 2 * lock.ttl_ms / 3000

    return waited


async def test_a_stale_fencing_token_fails_the_check_even_after_the_lease_is_taken_back(
    redis_client,
) -> None:
    a, b = LeaderLock(redis_client, "a", ttl_ms=5000), LeaderLock(redis_client, "b", ttl_ms=5000)
    assert await a.acquire()
    first = a.token
    await a.check("register a version")  # holds, token current
    await redis_client.delete(keys.leader_lock("trainer"))  # the lease expired meanwhile
    assert await b.acquire() and b.token > first
    with pytest.raises(LeadershipLost):
        await a.check("register a version")
    await b.release()
    stale = LeaderLock(redis_client, "a", ttl_ms=5000)
    stale.held, stale.token = True, first
    stale._renewed_at = time.monotonic()
    assert await a.acquire() and a.token > b.token  # a new tenure, a new token
    with pytest.raises(LeadershipLost):
        await stale.check("queue an export")  # the old tenure's token stays refused
