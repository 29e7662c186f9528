"""Start and stop the search index with the gateway (entered on the lifespan's exit stack)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from hivemind_common.redis import HivemindRedis, connect_redis
from hivemind_gateway.search.embedder import EmbeddingClient
from hivemind_gateway.search.sync import SearchIndex
from hivemind_gateway.settings import GatewaySettings


def limit_blas_threads() -> None:
    """One BLAS thread for the process: a vector scan is a small matrix-vector product, and on a
    busy 2-core box two spinning OpenBLAS threads made a 10k-row scan 10x slower (17 ms vs
    1.6 ms p50, measured). Process-wide; the gateway does no large BLAS work elsewhere."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it the BLAS default stands
        return
    threadpool_limits(limits=1, user_api="blas")


@asynccontextmanager
async def search_runtime(
    redis: HivemindRedis, embedding_http: httpx.AsyncClient, settings: GatewaySettings
) -> AsyncIterator[SearchIndex]:
    """The gateway's search index, loaded from Redis and kept current until the exit."""
    limit_blas_threads()
    redis_bytes = connect_redis(settings.redis_url, decode_responses=False)
    holder: dict[str, SearchIndex] = {}

    async def on_model(model: str) -> None:
        if "index" in holder:
            await holder["index"].on_model(model)

    embedder = EmbeddingClient(
        embedding_http,
        timeout_s=settings.embedding_timeout_s,
        retry_after_s=settings.embedding_retry_after_s,
        on_model=on_model,
    )
    index = SearchIndex(redis, redis_bytes, embedder, ann_threshold=settings.search_ann_threshold)
    holder["index"] = index
    try:
        await index.start()
        yield index
    finally:
        await index.close()
        await redis_bytes.aclose()
