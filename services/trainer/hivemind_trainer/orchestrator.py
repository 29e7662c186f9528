"""The orchestrator: one leader at a time, and the rule for when to train.

The leader holds ``keys.leader_lock("trainer")`` (``SET NX PX``), renews it well before it expires
and gives it up only if it still owns it (compare-and-delete in Lua). :func:`decide` is the pure
rule: train when ``threshold`` new accepted samples exist, ``min_interval_s`` has passed since the
last *attempt*, and any failure back-off has run out. An attempt moves ``last_attempt_at``, so a
cycle that fails or is rejected cannot start again at once: the loop never spins.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from hivemind_common import keys

log = logging.getLogger(__name__)

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class LeaderLock:
    """A Redis lease with an owner token; renewed by :meth:`keep_renewed` while held."""

    def __init__(self, redis: Any, owner: str, *, ttl_ms: int = keys.LEADER_LOCK_TTL_MS) -> None:
        self.redis = redis
        self.owner = owner
        self.ttl_ms = ttl_ms
        self.key = keys.leader_lock("trainer")
        self.held = False

    async def acquire(self) -> bool:
        if await self.redis.set(self.key, self.owner, nx=True, px=self.ttl_ms):
            self.held = True
        else:
            self.held = await self.redis.get(self.key) == self.owner
        return self.held

    async def renew(self) -> bool:
        self.held = bool(await self.redis.eval(_RENEW, 1, self.key, self.owner, self.ttl_ms))
        return self.held

    async def release(self) -> None:
        with contextlib.suppress(Exception):  # best effort on shutdown; the lease expires anyway
            await self.redis.eval(_RELEASE, 1, self.key, self.owner)
        self.held = False

    async def keep_renewed(self) -> None:
        """Renew every third of the TTL until cancelled; a lost lease is logged and noted."""
        while True:
            await asyncio.sleep(self.ttl_ms / 3000)
            if self.held and not await self.renew():
                log.warning("trainer leader lease lost")

    async def holder(self) -> str | None:
        value = await self.redis.get(self.key)
        return str(value) if value else None


@dataclass
class Decision:
    train: bool
    reason: str


def decide(
    *,
    now: float,
    new_samples: int,
    threshold: int,
    last_attempt_at: float,
    min_interval_s: float,
    failures: int,
    last_failure_at: float,
    backoff_base_s: float,
    backoff_max_s: float,
) -> Decision:
    """Whether to start a cycle now, and why (or why not)."""
    if new_samples < threshold:
        return Decision(False, f"{new_samples} of {threshold} new samples")
    since = now - last_attempt_at
    if since < min_interval_s:
        return Decision(False, f"last attempt {since:.0f}s ago (< {min_interval_s:.0f}s)")
    if failures > 0:
        wait = min(backoff_max_s, backoff_base_s * 2 ** (failures - 1))
        if now - last_failure_at < wait:
            return Decision(False, f"backing off {wait:.0f}s after {failures} failure(s)")
    return Decision(True, f"{new_samples} new samples")


async def state_decision(redis: Any, settings: Any, *, now: float | None = None) -> Decision:
    """:func:`decide` on the learning state kept in Redis."""
    state = await redis.hgetall(keys.learning_state())

    def num(key: str) -> float:
        try:
            return float(state.get(key) or 0)
        except ValueError:
            return 0.0

    return decide(
        now=now if now is not None else time.time(),
        new_samples=int(num("accepted_seq") - num("trained_seq")),
        threshold=settings.threshold,
        last_attempt_at=num("last_attempt_at"),
        min_interval_s=settings.min_interval_s,
        failures=int(num("failures")),
        last_failure_at=num("last_failure_at"),
        backoff_base_s=settings.backoff_base_s,
        backoff_max_s=settings.backoff_max_s,
    )
