"""The orchestrator's rule and the leader lease."""

from __future__ import annotations

from hivemind_trainer.orchestrator import LeaderLock, decide

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
