"""Data the console tests put in place through the same code paths as the product."""

from __future__ import annotations

import asyncio

from hivemind_common.redis import connect_redis


def log_missed_queries(redis_url: str, tenant: str, queries: list[str], quality: str) -> None:
    """Put retrievals that found nothing into the tenant's retrieval log, as the gate does."""
    from hivemind_gateway.rag.retrieval_log import log_retrieval
    from hivemind_gateway.rag.schemas import RagContext

    async def go() -> None:
        redis = connect_redis(redis_url)
        try:
            for query in queries:
                context = RagContext(text="", items=[], quality=quality)  # type: ignore[arg-type]
                await log_retrieval(
                    redis, tenant=tenant, query=query, context=context, top_score=0.1
                )
        finally:
            await redis.aclose()

    asyncio.run(go())
