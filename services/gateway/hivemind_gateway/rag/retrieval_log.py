"""The retrieval log (a capped stream per tenant), its counters, and suggestions mined from it.

Every read key of a tenant can see what is logged (suggestions quote queries), so a query is
logged only after the secret scrubber has run over it, and entries older than the retention
(``HIVEMIND_RAG_LOG_RETENTION_DAYS``) are trimmed on write and never read.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

from prometheus_client import Counter as PromCounter

from hivemind_common import keys
from hivemind_common.redaction import scrub_text
from hivemind_gateway.rag.schemas import RagContext, Suggestion, Suggestions
from hivemind_gateway.search.index import TenantIndex
from hivemind_gateway.search.lexical import words

log = logging.getLogger(__name__)

RETRIEVALS = PromCounter(
    "hivemind_rag_retrievals_total",
    "Retrievals for prompts, by gate quality and scoring method.",
    ["quality", "method"],
)

SUGGEST_SCAN = 2000
LOGGED_QUERY_CHARS = 500


def _oldest_kept_id(retention_s: float | None) -> str:
    """The smallest stream id still inside the retention ("-": everything)."""
    if retention_s is None:
        return "-"
    return str(max(0, int((time.time() - retention_s) * 1000)))


async def log_retrieval(
    redis: Any,
    *,
    tenant: str,
    query: str,
    context: RagContext,
    top_score: float,
    retention_s: float | None = None,
) -> None:
    """Append to the tenant's capped log and bump counters; a logging failure is only logged."""
    RETRIEVALS.labels(context.quality, context.method).inc()
    entry = {
        "ts": f"{time.time():.3f}",
        "query": scrub_text(query[: LOGGED_QUERY_CHARS * 2])[:LOGGED_QUERY_CHARS],
        "quality": context.quality,
        "method": context.method,
        "injected": str(sum(1 for i in context.items if not i.pinned)),
        "top": f"{top_score:.4f}",
        "keys": ",".join(i.key for i in context.items if not i.pinned)[:1000],
    }
    try:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.xadd(keys.rag_log(tenant), entry, maxlen=keys.RAG_LOG_MAXLEN, approximate=True)
            if retention_s is not None:
                oldest = _oldest_kept_id(retention_s)
                pipe.xtrim(keys.rag_log(tenant), minid=oldest, approximate=False)
            pipe.hincrby(keys.rag_counters(tenant), f"quality:{context.quality}", 1)
            pipe.hincrby(keys.rag_counters(tenant), f"method:{context.method}", 1)
            pipe.hincrby(keys.rag_counters(tenant), "total", 1)
            await pipe.execute()
    except Exception:  # the answer matters more than its log line
        log.warning("could not log a retrieval for tenant %s", tenant, exc_info=True)


async def read_counters(redis: Any, tenant: str) -> tuple[dict[str, int], int]:
    counters = await redis.hgetall(keys.rag_counters(tenant))
    logged = await redis.xlen(keys.rag_log(tenant))
    return {k: int(v) for k, v in sorted(counters.items())}, int(logged)


async def suggestions(
    redis: Any,
    index: TenantIndex,
    *,
    tenant: str,
    limit: int = 10,
    retention_s: float | None = None,
) -> Suggestions:
    """Topics of weak and missed queries that no fact's wording covers, most asked first."""
    oldest = _oldest_kept_id(retention_s)
    entries = await redis.xrevrange(keys.rag_log(tenant), min=oldest, count=SUGGEST_SCAN)
    covered = index["fact"].lexical.postings
    per_topic: Counter[str] = Counter()
    surface: dict[str, Counter[str]] = {}
    examples: dict[str, list[str]] = {}
    scanned = 0
    for _, fields in entries:
        if fields.get("quality") not in ("weak", "miss"):
            continue
        scanned += 1
        query = fields.get("query", "")
        for term, word in dict(words(query)).items():
            if term in covered or len(term) < 3 or term.isdigit():
                continue
            per_topic[term] += 1
            surface.setdefault(term, Counter())[word] += 1
            seen = examples.setdefault(term, [])
            if query not in seen and len(seen) < 3:
                seen.append(query)
    data = [
        Suggestion(topic=surface[term].most_common(1)[0][0], queries=n, examples=examples[term])
        for term, n in per_topic.most_common(limit)
    ]
    return Suggestions(data=data, scanned=scanned)
