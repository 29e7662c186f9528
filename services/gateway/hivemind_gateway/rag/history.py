"""Retrieval quality over time: the tenant's retrieval log counted per time bucket.

``GET /v1/rag/history?hours=&bucket_s=`` reads the log's entries of the last ``hours`` (stream
ids are their times, so only that range is read, at most :data:`HISTORY_SCAN` entries) and counts
each gate verdict per bucket: the console's "retrieval quality over time" chart.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel

from hivemind_common import keys

HISTORY_SCAN = 10_000  # the retrieval log's own cap (keys.RAG_LOG_MAXLEN)
QUALITIES = ("good", "weak", "miss", "fallback")


class QualityBucket(BaseModel):
    start: float  # unix seconds
    good: int = 0
    weak: int = 0
    miss: int = 0
    fallback: int = 0


class QualityHistory(BaseModel):
    bucket_s: int
    buckets: list[QualityBucket]  # oldest first, every bucket of the range (empty ones too)
    scanned: int


async def quality_history(
    redis: Any, *, tenant: str, hours: float, bucket_s: int, now: float | None = None
) -> QualityHistory:
    """Counts of each quality per ``bucket_s`` over the last ``hours``."""
    now = time.time() if now is None else now
    first = int((now - hours * 3600) // bucket_s) * bucket_s
    count = int((now - first) // bucket_s) + 1
    buckets = [QualityBucket(start=first + i * bucket_s) for i in range(count)]
    entries = await redis.xrange(
        keys.rag_log(tenant), min=str(int(first * 1000)), max="+", count=HISTORY_SCAN
    )
    for entry_id, fields in entries:
        quality = fields.get("quality")
        if quality not in QUALITIES:
            continue
        at = int(str(entry_id).split("-", 1)[0]) / 1000
        index = int((at - first) // bucket_s)
        if 0 <= index < count:
            bucket = buckets[index]
            setattr(bucket, quality, getattr(bucket, quality) + 1)
    return QualityHistory(bucket_s=bucket_s, buckets=buckets, scanned=len(entries))
