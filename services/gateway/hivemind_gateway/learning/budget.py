"""Each tenant's daily budget of learning samples on the shared learning stream, in bytes and
in samples.

Samples (posted with ``POST /v1/learning/samples`` or captured from chats) of every tenant go on
one stream that the trainer drains; without a bound, one tenant could fill Redis (which never
evicts) or trim the others' samples out of the stream before the trainer reads them. The stream
is capped in entries (``keys.LEARNING_STREAM_MAXLEN``), so bytes alone did not bound the second:
64 MiB of small samples was more than the whole stream. Counters per tenant and UTC day, in
Redis so every gateway agrees, one pipelined round trip.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

from hivemind_common import keys

DAY_S = 86_400


def stored_bytes(fields: dict[str, Any]) -> int:
    """What a sample's stream entry holds, in bytes (UTF-8, as Redis keeps it): counted in
    characters, a sample of emoji stored four times the budget."""
    return sum(len(str(k).encode()) + len(str(v).encode()) for k, v in fields.items())


@dataclass(frozen=True)
class Spent:
    """A refused sample: the seconds until the budget renews, and which budget ran out."""

    wait_s: float
    what: Literal["bytes", "samples"]


async def charge(
    redis: Any, tenant: str, size: int, limit_bytes: int, limit_samples: int = 0
) -> Spent | None:
    """Count one sample of ``size`` bytes against the tenant's budgets for today: None when it
    fits both (a limit of 0 is none), else what was spent (and nothing is counted)."""
    if limit_bytes <= 0 and limit_samples <= 0:
        return None
    now = time.time()
    day = int(now // DAY_S)
    counted = keys.learning_bytes(tenant, day)
    samples = keys.learning_samples(tenant, day)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.incrby(counted, size)
        pipe.expire(counted, keys.LEARNING_BYTES_TTL_S)
        pipe.incr(samples)
        pipe.expire(samples, keys.LEARNING_BYTES_TTL_S)
        total, _, count, _ = await pipe.execute()
    spent: Literal["bytes", "samples"] | None = None
    if 0 < limit_bytes < int(total):
        spent = "bytes"
    elif 0 < limit_samples < int(count):
        spent = "samples"
    if spent is None:
        return None
    async with redis.pipeline(transaction=False) as pipe:  # what was not queued does not count
        pipe.decrby(counted, size)
        pipe.decr(samples)
        await pipe.execute()
    return Spent((day + 1) * DAY_S - now, spent)


def refusal(tenant: str, spent: Spent, limit_bytes: int, limit_samples: int) -> str:
    """Why a sample was refused, naming the gateway setting that bounds it."""
    if spent.what == "bytes":
        return (
            f"tenant {tenant!r} queued its {limit_bytes // 2**20} MiB of learning samples for "
            "today (the gateway's HIVEMIND_LEARNING_MB_PER_TENANT_DAY)"
        )
    return (
        f"tenant {tenant!r} queued its {limit_samples} learning samples for today (the "
        "gateway's HIVEMIND_LEARNING_SAMPLES_PER_TENANT_DAY)"
    )
