"""Each tenant's daily budget of learning-sample bytes on the shared learning stream.

Samples (posted with ``POST /v1/learning/samples`` or captured from chats) of every tenant go on
one stream that the trainer drains; without a bound, one tenant could fill Redis (which never
evicts) or trim the others' samples out of the stream before the trainer reads them. A counter
per tenant and UTC day, in Redis so every gateway agrees, one pipelined round trip.
"""

from __future__ import annotations

import time
from typing import Any

from hivemind_common import keys

DAY_S = 86_400


def stored_bytes(fields: dict[str, Any]) -> int:
    """What a sample's stream entry holds, in bytes (UTF-8, as Redis keeps it): counted in
    characters, a sample of emoji stored four times the budget."""
    return sum(len(str(k).encode()) + len(str(v).encode()) for k, v in fields.items())


async def charge(redis: Any, tenant: str, size: int, limit_bytes: int) -> float | None:
    """Count ``size`` bytes against the tenant's budget for today: None when it fits (or there
    is no limit), else the seconds until the budget renews."""
    if limit_bytes <= 0:
        return None
    now = time.time()
    day = int(now // DAY_S)
    counter = keys.learning_bytes(tenant, day)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.incrby(counter, size)
        pipe.expire(counter, keys.LEARNING_BYTES_TTL_S)
        total, _ = await pipe.execute()
    if int(total) <= limit_bytes:
        return None
    await redis.decrby(counter, size)  # refused: what was not queued does not count
    return (day + 1) * DAY_S - now
