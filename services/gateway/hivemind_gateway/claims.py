"""Write claims: what keeps two concurrent writes of one item from both winning.

A read-then-write (is this id free? which chunks does this document hold?) races with another
request doing the same between our read and our MULTI/EXEC. Each such write first takes a
claim, ``SET keys.write_claim(...) value NX PX``, before it reads:

* ``claim_digests``: a memory written under a client's id claims the id with the digest of its
  body. A second request with another body finds the claim held by another digest and is
  refused (409) at once; one with the same body (a retry) goes on and writes the same thing.
  The write's transaction deletes the claim, so the stored record is the judge from then on.
* ``write_lock``: a document's writer waits its turn (the claim holds a token of its own), then
  reads the document's current chunk ids, so the chunks it drops are those really stored.

A writer that dies leaves its claim to expire after ``keys.WRITE_CLAIM_MS``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from hivemind_common import keys
from hivemind_common.errors import Conflict


def body_digest(fields: Mapping[str, str]) -> str:
    """A digest of a body's fields, the same for the same body in any process."""
    return hashlib.sha256(json.dumps(dict(sorted(fields.items()))).encode()).hexdigest()[:32]


async def claim_digests(
    redis: Any, tenant: str, kind: str, digests: Mapping[str, str]
) -> dict[str, str]:
    """Claim each id for its body's digest; returns the ids claimed by another body (and
    that body's digest). An id whose claim holds the same digest counts as ours."""
    if not digests:
        return {}
    ids = list(digests)
    async with redis.pipeline(transaction=False) as pipe:
        for item_id in ids:
            key = keys.write_claim(tenant, kind, item_id)
            pipe.set(key, digests[item_id], nx=True, px=keys.WRITE_CLAIM_MS)
            pipe.get(key)
        rows = await pipe.execute()
    held = rows[1::2]
    return {
        item_id: _text(now)
        for item_id, now in zip(ids, held, strict=True)
        if now is not None and _text(now) != digests[item_id]
    }


def release_commands(tenant: str, kind: str, ids: list[str]) -> list[tuple[Any, ...]]:
    """Commands for the write's own transaction that drop its claims."""
    return [("DEL", keys.write_claim(tenant, kind, item_id)) for item_id in ids]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@asynccontextmanager
async def write_lock(
    redis: Any, tenant: str, kind: str, item_id: str, *, wait_s: float = 10.0
) -> AsyncIterator[str]:
    """Hold the item's write claim for the block (waiting up to ``wait_s`` for another
    writer to finish); ``Conflict`` (409) if it stays held. Yields the claim's key, which
    the write's transaction may delete itself (the block deletes it otherwise, if still ours)."""
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
    try:
        yield key
    finally:
        held = await redis.get(key)
        if held is not None and _text(held) == token:
            await redis.delete(key)
