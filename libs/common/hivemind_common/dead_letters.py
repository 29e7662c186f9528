"""Poison jobs end: every start of a job is counted, and past a limit it goes to a dead-letter list.

A job whose work kills its process (an out-of-memory kill, a segfault in a native library) is
never acknowledged, so a consumer group would hand it out forever. Each worker counts its own
starts in the job's record (a field per kind, ``attempts:train`` / ``attempts:export``) before it
runs the job, because a stream's delivery counter misses a restarted consumer that re-reads its
own pending entries. Past ``max_attempts`` the job is *buried*: its record ends ``failed`` with
the reason, an entry goes to ``keys.dead_letters()`` (newest first, capped), and the stream entry
is acknowledged. ``hivemind learn status`` lists them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from redis.exceptions import RedisError

from hivemind_common import keys
from hivemind_common.errors import NotFound
from hivemind_common.job_records import get_job, recent_dead_letters, update_job
from hivemind_common.redis import HivemindRedis

log = logging.getLogger(__name__)

DEFAULT_MAX_ATTEMPTS = 3


async def count_start(redis: HivemindRedis, job_id: str, kind: str) -> int:
    """Count one more start of ``job_id``'s ``kind`` of work; returns the starts so far.

    A job without a record is not counted (0): nothing would expire the counter.
    """
    if not await redis.exists(keys.job(job_id)):
        return 0
    return int(await redis.hincrby(keys.job(job_id), f"attempts:{kind}", 1))


async def bury(
    redis: HivemindRedis,
    *,
    job_id: str,
    kind: str,
    attempts: int,
    reason: str,
    stream: str,
    group: str,
    entry_id: str,
) -> dict[str, Any]:
    """Fail the job with ``reason``, list it as a dead letter and acknowledge its entry."""
    stage = None
    try:
        stage = (await get_job(redis, job_id)).stage
        await update_job(redis, job_id, status="failed", error=reason)
    except NotFound:
        pass
    letter = {
        "job_id": job_id,
        "kind": kind,
        "attempts": attempts,
        "stage": stage,
        "reason": reason,
        "at": round(time.time(), 3),
        "entry_id": entry_id,
    }
    await redis.transaction(
        ("LPUSH", keys.dead_letters(), json.dumps(letter)),
        ("LTRIM", keys.dead_letters(), 0, keys.DEAD_LETTERS_MAX - 1),
        durable=True,
    )
    await redis.xack(stream, group, entry_id)
    return letter


def poison_reason(kind: str, attempts: int, stage: str | None) -> str:
    """The error a buried job carries."""
    where = f" (it was at stage {stage!r})" if stage else ""
    return (
        f"{kind} job started {attempts} times without finishing{where}: the process running it "
        "died each time (out of memory?); moved to the dead-letter list"
    )


__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "bury",
    "count_start",
    "poison_reason",
    "recent_dead_letters",
]


async def keep_claimed(
    redis: Any, stream: str, group: str, consumer: str, entry_id: str, *, interval_s: float
) -> None:
    """Reset a running job's idle time every ``interval_s`` until cancelled, so that no other
    worker reclaims it (XCLAIM with JUSTID does not count as a delivery). A Redis error is
    logged and the next beat tried: one failure once ended the exporter's heartbeat, and a long
    export was reclaimed and run twice at once."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await redis.xclaim(
                stream, group, consumer, min_idle_time=0, message_ids=[entry_id], justid=True
            )
        except (RedisError, OSError) as exc:
            log.warning("could not refresh the claim on %s %s: %s", stream, entry_id, exc)
