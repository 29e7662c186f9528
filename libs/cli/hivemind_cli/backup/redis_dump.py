"""Every Redis key as a DUMP payload and back with RESTORE, on standalone, Sentinel and Cluster.

``scan_iter`` walks every primary on a Cluster; DUMP, PTTL and RESTORE route by key. A payload is
Redis' own serialisation, so a snapshot restores into the same or a newer Redis. Each key is read
whole; the snapshot as a whole is as of "during the backup", which is why the timer runs at a
quiet hour.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Any

from hivemind_common.redis import HivemindRedis

CHUNK = 200  # keys read or written concurrently


async def _chunks(redis: HivemindRedis) -> AsyncIterator[list[bytes]]:
    batch: list[bytes] = []
    async for key in redis.scan_iter(count=1000):
        batch.append(key)
        if len(batch) == CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch


async def dump_keys(redis: HivemindRedis, out: IO[str]) -> int:
    """Write one JSON line per key (``k``, ``v``: base64; ``ttl``: ms, 0 = none); returns the count.

    ``redis`` must be a client made with ``decode_responses=False``.
    """
    count = 0
    async for batch in _chunks(redis):
        dumps = await asyncio.gather(*(redis.dump(k) for k in batch))
        ttls = await asyncio.gather(*(redis.pttl(k) for k in batch))
        for key, payload, ttl in zip(batch, dumps, ttls, strict=True):
            if payload is None or int(ttl) == -2:  # expired or deleted since the scan (or
                continue  # between its DUMP and PTTL: restoring it would make it permanent)
            line = {
                "k": base64.b64encode(key).decode(),
                "v": base64.b64encode(payload).decode(),
                "ttl": max(int(ttl), 0),
            }
            out.write(json.dumps(line, separators=(",", ":")) + "\n")
            count += 1
    return count


async def is_empty(redis: HivemindRedis) -> bool:
    """True when no primary holds a key."""
    async for _ in redis.scan_iter(count=100):
        return False
    return True


async def restore_keys(redis: HivemindRedis, path: Path, *, replace: bool = False) -> int:
    """RESTORE every line of ``path``; ``replace`` overwrites keys that exist (else Redis
    refuses them: the caller checks :func:`is_empty` first)."""

    async def one(line: dict[str, Any]) -> None:
        key = base64.b64decode(line["k"])
        value = base64.b64decode(line["v"])
        await redis.restore(key, int(line["ttl"]), value, replace=replace)

    count = 0
    with path.open() as f:
        batch: list[dict[str, Any]] = []
        for raw in f:
            if raw.strip():
                batch.append(json.loads(raw))
            if len(batch) == CHUNK:
                await asyncio.gather(*(one(x) for x in batch))
                count += len(batch)
                batch = []
        await asyncio.gather(*(one(x) for x in batch))
        count += len(batch)
    return count
