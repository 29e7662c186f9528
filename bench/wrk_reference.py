"""The same-run reference for ``bench_gateway_wrk``: the system we replace, in miniature.

A single FastAPI process on plain uvicorn (asyncio loop, h11, no uvloop), as the original ran,
doing what its fact lookup and session-context store did: the bearer key's record read from
Redis on every request, then one Redis read (or write and read) for the route. It reads the
records the gateway wrote, so both answer the same requests against the same Redis under the
same machine load; the ratio between them is what the load does not blur.

``python -m bench.wrk_reference --port P --redis-url URL``
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
import uvicorn
from fastapi import FastAPI, HTTPException, Request

from hivemind_common import keys

SESSION_TTL_S = 30 * 24 * 3600


def reference_app(redis_url: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.redis = aioredis.from_url(redis_url, decode_responses=True)
        yield
        await app.state.redis.aclose()

    app = FastAPI(lifespan=lifespan)

    async def tenant_of(request: Request) -> str:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        parts = token.strip().split("_")
        if scheme.lower() != "bearer" or len(parts) != 3:
            raise HTTPException(401, "missing API key")
        rec = await request.app.state.redis.hgetall(keys.api_key(parts[1]))
        digest = hashlib.sha256(token.strip().encode()).hexdigest()
        if not rec or not hmac.compare_digest(rec.get("hash", ""), digest):
            raise HTTPException(401, "unknown API key")
        return str(rec["tenant"])

    @app.get("/v1/facts/{key}")
    async def get_fact(key: str, request: Request) -> dict[str, Any]:
        tenant = await tenant_of(request)
        rec = await request.app.state.redis.hgetall(keys.fact(tenant, key))
        if not rec:
            raise HTTPException(404, "no such fact")
        return {
            "key": key,
            "value": rec.get("value", ""),
            "tags": json.loads(rec.get("tags") or "[]"),
            "created_at": float(rec.get("created_at") or 0),
            "updated_at": float(rec.get("updated_at") or 0),
        }

    @app.put("/v1/sessions/{session_id}/context")
    async def put_context(session_id: str, request: Request) -> dict[str, Any]:
        tenant = await tenant_of(request)
        body = await request.json()
        key = keys.session(tenant, session_id)
        now = f"{time.time():.6f}"
        redis = request.app.state.redis
        async with redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"context": body["context"], "updated_at": now})
            pipe.hsetnx(key, "created_at", now)
            pipe.expire(key, SESSION_TTL_S)
            pipe.hgetall(key)
            *_, rec = await pipe.execute()
        return {"id": session_id, **rec}

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    args = parser.parse_args()
    uvicorn.run(
        reference_app(args.redis_url),
        host="127.0.0.1",
        port=args.port,
        loop="asyncio",
        http="h11",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
