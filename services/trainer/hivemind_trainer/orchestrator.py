"""The orchestrator: one leader at a time, and the rule for when to train.

The leader holds ``keys.leader_lock("trainer")`` (``SET NX PX``) with a fencing token, renews it
well before it expires (a failed renewal is retried; a lease not renewed for a whole TTL counts as
lost) and gives it up only if it still owns it (compare-and-delete in Lua). Results are written
only after :meth:`LeaderLock.check` confirms the lease and its token in Redis.

:func:`decide` is the pure rule: train when ``threshold`` new accepted samples exist,
``min_interval_s`` has passed since the last *attempt*, and any failure back-off has run out. An
attempt moves ``last_attempt_at``, so a cycle that fails or is rejected cannot start again at
once: the loop never spins.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from hivemind_common import keys
from hivemind_common.errors import Conflict
from hivemind_common.redis import HivemindRedis
from hivemind_trainer.settings import TrainerSettings

log = logging.getLogger(__name__)

# Taking the lease bumps the fencing token (``leader_epoch`` of the learning state, same slot);
# holding it already returns the current token; 0: someone else holds it.
_ACQUIRE = """
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('hincrby', KEYS[2], 'leader_epoch', 1)
end
if redis.call('get', KEYS[1]) == ARGV[1] then
  local epoch = tonumber(redis.call('hget', KEYS[2], 'leader_epoch') or '0')
  if epoch == 0 then epoch = redis.call('hincrby', KEYS[2], 'leader_epoch', 1) end
  return epoch
end
return 0
"""
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
_FENCE_OK = """
if redis.call('get', KEYS[1]) == ARGV[1]
   and redis.call('hget', KEYS[2], 'leader_epoch') == ARGV[2] then
  return 1
end
return 0
"""


class LeadershipLost(Conflict):
    """The lease ran out or passed to another trainer: this one must not write results."""

    code = "leadership_lost"


class LeaderLock:
    """A Redis lease with an owner and a fencing token, renewed by :meth:`keep_renewed`.

    Each new tenure gets a larger fencing token. :meth:`check` asks Redis, atomically, whether
    this owner still holds the lease *with the same token*: a trainer whose lease lapsed (a GC
    pause, a partition) and was taken by another fails the check even if it takes it back later.
    """

    def __init__(
        self, redis: HivemindRedis, owner: str, *, ttl_ms: int = keys.LEADER_LOCK_TTL_MS
    ) -> None:
        self.redis = redis
        self.owner = owner
        self.ttl_ms = ttl_ms
        self.key = keys.leader_lock("trainer")
        self.state_key = keys.learning_state()
        self.held = False
        self.token = 0
        self._renewed_at = 0.0  # monotonic time of the last successful acquire / renew

    async def acquire(self) -> bool:
        token = int(
            await self.redis.eval(_ACQUIRE, 2, self.key, self.state_key, self.owner, self.ttl_ms)
        )
        self.held = token > 0
        if self.held:
            self.token = token
            self._renewed_at = time.monotonic()
        return self.held

    async def renew(self) -> bool:
        self.held = bool(await self.redis.eval(_RENEW, 1, self.key, self.owner, self.ttl_ms))
        if self.held:
            self._renewed_at = time.monotonic()
        return self.held

    async def release(self) -> None:
        with contextlib.suppress(Exception):  # best effort on shutdown; the lease expires anyway
            await self.redis.eval(_RELEASE, 1, self.key, self.owner)
        self.held = False

    @property
    def lapsed(self) -> bool:
        """True once we cannot be sure we hold the lease (no renewal for a whole TTL)."""
        return not self.held or time.monotonic() - self._renewed_at >= self.ttl_ms / 1000

    def raise_if_lapsed(self) -> None:
        """A cheap local check for safe points inside long work (no Redis call)."""
        if self.lapsed:
            raise LeadershipLost("the trainer's leader lease lapsed; stopping this cycle")

    async def check(self, before: str) -> None:
        """Raise LeadershipLost unless Redis says we hold the lease with our fencing token."""
        self.raise_if_lapsed()
        ok = await self.redis.eval(
            _FENCE_OK, 2, self.key, self.state_key, self.owner, str(self.token)
        )
        if not int(ok):
            self.held = False
            raise LeadershipLost(
                f"not the leader any more (fencing token {self.token} is stale); "
                f"refusing to {before}"
            )

    async def keep_renewed(self) -> None:
        """Renew every third of the TTL until cancelled; errors are retried, never fatal.

        When renewals fail for a whole TTL the lease is treated as lost (``lapsed``), and the
        cycle stops at its next safe point.
        """
        while True:
            await asyncio.sleep(self.ttl_ms / 3000)
            if not self.held:
                continue
            try:
                if not await self.renew():
                    log.warning("trainer leader lease lost to %s", await self.holder())
            except Exception as exc:  # Redis away: retry; `lapsed` tells the cycle when to stop
                log.warning("could not renew the trainer leader lease: %s", exc)

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


async def state_decision(
    redis: HivemindRedis, settings: TrainerSettings, *, now: float | None = None
) -> Decision:
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
