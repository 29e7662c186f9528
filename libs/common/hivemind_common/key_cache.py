"""Verified API keys remembered in-process for a few seconds; a revocation reaches every process
within a second.

A request whose key this process verified less than ``ttl_s`` ago is authenticated without a
Redis round trip. A revoke writes the key's ``revoked`` flag and appends its id to the
revocation stream (``keys.api_key_revocations()``) in one MULTI/EXEC; every process tails that
stream with a blocking read and forgets the key as the entry arrives (milliseconds; the promise
is :data:`REVOCATION_BOUND_S`). The process that revokes forgets at once.

The cache serves only while its tail is healthy: when the last read that answered is older than
:data:`REVOCATION_BOUND_S` (Redis away, a failover, a stalled loop), every request is verified in
Redis as before, and the cache is emptied when the tail comes back (entries may have been
missed). Only good keys are remembered (an unknown key is looked up every time), by the SHA-256
of the secret, never in clear; ``ttl_s`` bounds anything no signal covers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter

from hivemind_common import keys

if TYPE_CHECKING:
    from hivemind_common.auth import Principal

log = logging.getLogger(__name__)

REVOCATION_BOUND_S = 1.0  # a revoked key is refused by every process within this
TAIL_BLOCK_MS = 250  # the tail answers at least this often, which keeps it fresh
MAX_ENTRIES = 10_000

KEY_CACHE = Counter(
    "hivemind_api_key_cache_total",
    "API key verifications: hit (no Redis), miss (read from Redis), bypass (tail not healthy).",
    ["result"],
)
_HIT, _MISS, _BYPASS = (KEY_CACHE.labels(r) for r in ("hit", "miss", "bypass"))


@dataclass(frozen=True)
class _Entry:
    digest: str
    principal: Principal
    expires_at: float


class KeyCache:
    """Principals of recently verified keys, by key id; see the module's docstring."""

    def __init__(self, redis: Any, *, ttl_s: float, max_entries: int = MAX_ENTRIES) -> None:
        self.redis = redis
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.epoch = 0  # bumped by every revocation: a lookup begun before one is not kept
        self.revocations_seen = 0
        self._entries: dict[str, _Entry] = {}
        self._fresh_until = 0.0  # the tail answered recently enough to trust the entries
        self._cursor = "0-0"

    # --- lookups ----------------------------------------------------------------------------
    def get(self, key_id: str, digest: str) -> Principal | None:
        """The remembered principal of this key, or None (then read Redis)."""
        now = time.monotonic()
        if now >= self._fresh_until:
            _BYPASS.inc()
            return None
        entry = self._entries.get(key_id)
        if entry is None or entry.expires_at <= now:
            _MISS.inc()
            return None
        if not hmac.compare_digest(entry.digest, digest):
            _MISS.inc()  # another secret with this key id: Redis decides
            return None
        _HIT.inc()
        return entry.principal

    def put(self, principal: Principal, digest: str, epoch: int) -> None:
        """Remember a key verified in Redis, unless a revocation came since ``epoch``."""
        if epoch != self.epoch or self.ttl_s <= 0:
            return
        now = time.monotonic()
        if len(self._entries) >= self.max_entries:
            self._entries = {k: e for k, e in self._entries.items() if e.expires_at > now}
            while len(self._entries) >= self.max_entries:  # oldest first
                del self._entries[next(iter(self._entries))]
        self._entries[principal.key_id] = _Entry(digest, principal, now + self.ttl_s)

    def forget(self, key_id: str) -> None:
        """Drop a key at once (this process revoked it, or a signal said so)."""
        self.epoch += 1
        self._entries.pop(key_id, None)

    def clear(self) -> None:
        self.epoch += 1
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    # --- the revocation tail ----------------------------------------------------------------
    async def start_position(self) -> None:
        """Tail from the stream's current end (older revocations are already in Redis)."""
        last = await self.redis.xrevrange(keys.api_key_revocations(), count=1)
        self._cursor = str(last[0][0]) if last else "0-0"
        self._fresh_until = time.monotonic() + REVOCATION_BOUND_S  # the tail starts here

    async def poll(self, block_ms: int = TAIL_BLOCK_MS) -> int:
        """One blocking read of the revocation stream; forgets what it names. Returns how many."""
        stream = keys.api_key_revocations()
        reply = await self.redis.xread({stream: self._cursor}, count=500, block=block_ms)
        seen = 0
        for _name, entries in reply or ():
            for entry_id, fields in entries:
                self._cursor = str(entry_id)
                key_id = fields.get("key_id") if isinstance(fields, dict) else None
                if key_id:
                    self.forget(str(key_id))
                    seen += 1
        self.revocations_seen += seen
        self._fresh_until = time.monotonic() + REVOCATION_BOUND_S
        return seen

    async def _tail_forever(self) -> None:
        healthy = True
        while True:  # from the stream's end, once Redis answers (a service starts without it)
            try:
                await self.start_position()
                break
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("api key revocation stream not readable yet; keys verified in Redis")
                await asyncio.sleep(0.5)
        while True:
            try:
                await self.poll()
                if not healthy:
                    self.clear()  # signals may have been missed while away
                    healthy = True
                    log.info("api key revocation tail is back; key cache emptied")
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis away or failing over: verify in Redis until it is back
                self._fresh_until = 0.0
                if healthy:
                    log.warning("api key revocation tail failed; keys verified in Redis")
                healthy = False
                await asyncio.sleep(0.2)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[KeyCache]:
        """Tail the revocation stream for as long as the block runs (a service's lifespan)."""
        task = asyncio.create_task(self._tail_forever(), name="api-key-revocations")
        try:
            yield self
        finally:
            self._fresh_until = 0.0
            task.cancel()
            await asyncio.wait([task], timeout=5.0)  # bounded: shutdown never waits on Redis


__all__ = ["KEY_CACHE", "REVOCATION_BOUND_S", "KeyCache"]
