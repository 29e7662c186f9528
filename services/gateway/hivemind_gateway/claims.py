"""Write claims: what keeps two concurrent writes of one item from both winning.

A read-then-write (is this id free? which chunks does this document hold?) races with another
request doing the same between our read and our MULTI/EXEC. Each such write first takes a
claim, ``SET keys.write_claim(...) value NX PX``, before it reads:

* ``claim_digests``: a memory written under a client's id claims the id with the digest of its
  body. A second request with another body finds the claim held by another digest and is
  refused (409) at once; one with the same body (a retry) goes on and writes the same thing.
  The write's transaction deletes the claim, so the stored record is the judge from then on;
  only a request that finds the record stored (a retry, a conflict) may drop it without writing.
  A write that fails leaves the claim to lapse: another request of the same body may still be
  writing under it.
* ``write_lock``: a document's writer waits its turn (the claim holds a token of its own), then
  reads the document's current chunk ids, so the chunks it drops are those really stored.

A writer that dies leaves its claim to expire after ``keys.WRITE_CLAIM_MS``. ``SET NX GET`` needs
Redis 7.0 or later (the suite's floor).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from hivemind_common import keys
from hivemind_common.errors import Conflict

log = logging.getLogger(__name__)


def body_digest(fields: Mapping[str, str]) -> str:
    """A digest of a body's fields, the same for the same body in any process."""
    return hashlib.sha256(json.dumps(dict(sorted(fields.items()))).encode()).hexdigest()[:32]


async def claim_digests(
    redis: Any, tenant: str, kind: str, digests: Mapping[str, str]
) -> dict[str, str]:
    """Claim each id for its body's digest; returns the ids claimed by another body (and
    that body's digest). An id whose claim holds the same digest counts as ours: that body is
    being written already, and writing it again writes the same. ``SET NX GET`` sets and reads
    in one step, so a claim that lapses in between cannot be mistaken for ours."""
    if not digests:
        return {}
    ids = list(digests)
    async with redis.pipeline(transaction=False) as pipe:
        for item_id in ids:
            key = keys.write_claim(tenant, kind, item_id)
            pipe.set(key, digests[item_id], nx=True, px=keys.WRITE_CLAIM_MS, get=True)
        held = await pipe.execute()
    return {
        item_id: _text(now)
        for item_id, now in zip(ids, held, strict=True)
        if now is not None and _text(now) != digests[item_id]
    }


async def drop_claim(redis: Any, tenant: str, kind: str, item_id: str, value: str) -> None:
    """Drop a claim if it still holds ``value`` (a request that found the record stored and
    writes nothing: the record judges later writes). Best effort: a claim that cannot be
    dropped lapses, and the request's own answer stands."""
    await _release(redis, keys.write_claim(tenant, kind, item_id), value)


async def _release(redis: Any, key: str, value: str) -> None:
    try:
        await redis.eval(_RELEASE, 1, key, value)
    except Exception as exc:  # a script is not retried across a failover; the claim lapses
        log.warning("write claim %s not released (%s); it lapses", key, type(exc).__name__)


def release_commands(tenant: str, kind: str, ids: list[str]) -> list[tuple[Any, ...]]:
    """Commands for the write's own transaction that drop its claims."""
    return [("DEL", keys.write_claim(tenant, kind, item_id)) for item_id in ids]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# the lock's own token only: a lock that lapsed and was taken by another writer is theirs
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


@asynccontextmanager
async def write_lock(
    redis: Any, tenant: str, kind: str, item_id: str, *, wait_s: float = 10.0
) -> AsyncIterator[str]:
    """Hold the item's write claim for the block (waiting up to ``wait_s`` for another
    writer to finish); ``Conflict`` (409) if it stays held. The claim is renewed while the
    block runs (a slow write keeps it) and dropped at the end only if it is still ours."""
    key = keys.write_claim(tenant, kind, item_id)
    token = secrets.token_hex(12)
    deadline = time.monotonic() + wait_s
    delay = 0.005
    while not await redis.set(key, token, nx=True, px=keys.WRITE_CLAIM_MS):
        if time.monotonic() >= deadline:
            raise Conflict(
                f"another request is still writing {kind} {item_id!r}; retry it shortly",
                code="write_in_progress",
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)

    async def renew() -> None:
        while True:
            await asyncio.sleep(keys.WRITE_CLAIM_MS / 3000)
            try:
                held = await redis.eval(_RENEW, 1, key, token, keys.WRITE_CLAIM_MS)
            except Exception:  # Redis away: the next turn tries again
                continue
            if not held:
                log.warning("write lock %s lapsed while held", key)
                return

    renewing = asyncio.create_task(renew())
    try:
        yield key
    finally:
        renewing.cancel()
        await _release(redis, key, token)  # never hides the block's own answer or error
