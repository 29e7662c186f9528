"""The gateway: OpenAI-compatible chat with retrieval, and the native memory API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
from fastapi import FastAPI

from hivemind_common.auth import ApiKeyStore
from hivemind_common.internal_http import internal_client
from hivemind_common.key_cache import KeyCache
from hivemind_common.redis import connect_redis
from hivemind_common.scrape_metrics import disk_sampler, redis_sampler
from hivemind_common.service_app import base_app, mark_started
from hivemind_gateway import __version__
from hivemind_gateway.anthropic.router import router as anthropic_router
from hivemind_gateway.audit.router import router as audit_router
from hivemind_gateway.cache.router import router as cache_router
from hivemind_gateway.console.router import install_console
from hivemind_gateway.console.sessions import COOKIE_NAME as CONSOLE_COOKIE
from hivemind_gateway.docs.router import router as docs_router
from hivemind_gateway.docs.router import tools_router as docs_tools_router
from hivemind_gateway.facts.router import router as facts_router
from hivemind_gateway.hot_path import HotReads
from hivemind_gateway.keys.router import router as keys_router
from hivemind_gateway.learning.router import router as learning_router
from hivemind_gateway.limits import InferenceSlots, RequestLimiter
from hivemind_gateway.llm.router import router as llm_router
from hivemind_gateway.memory.router import router as memory_router
from hivemind_gateway.migrations import run_migrations
from hivemind_gateway.models.router import router as models_router
from hivemind_gateway.openai.router import model_router as openai_model_router
from hivemind_gateway.openai.router import router as openai_router
from hivemind_gateway.openai.served import served_models
from hivemind_gateway.overview.router import router as overview_router
from hivemind_gateway.rag.router import router as rag_router
from hivemind_gateway.responses.router import router as responses_router
from hivemind_gateway.search.runtime import search_runtime
from hivemind_gateway.settings import GatewaySettings
from hivemind_gateway.state import GatewayState
from hivemind_gateway.stats.router import router as stats_router


def create_app(settings: GatewaySettings) -> FastAPI:
    """Build a gateway app; clients and indexes are made in its lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            token = settings.require_internal_token()
            redis = connect_redis(settings.redis_url)
            stack.push_async_callback(redis.aclose)
            # verified keys remembered briefly; revocations reach this process within 1 s
            key_cache = KeyCache(redis, ttl_s=settings.key_cache_ttl_s)
            if settings.key_cache_ttl_s > 0:
                await stack.enter_async_context(key_cache.running())
            api_keys = ApiKeyStore(redis, cache=key_cache)
            rate_limiter = RequestLimiter(
                redis,
                default_key_rpm=settings.default_key_rpm,
                max_inference_per_tenant=settings.max_inference_per_tenant,
            )
            stack.push_async_callback(rate_limiter.aclose)
            clients: dict[str, httpx.AsyncClient] = {}
            for name, url in (
                ("embedding", settings.embedding_url),
                ("inference", settings.inference_url),
            ):
                clients[name] = internal_client(
                    name,
                    token=token,
                    base_url=url,
                    timeout=settings.upstream_timeout_s,
                    profile=settings.profile,
                )
                stack.push_async_callback(clients[name].aclose)
            # the shared layers (auth's require_role, limits) read these from app.state
            app.state.settings = settings
            app.state.redis = redis
            app.state.api_keys = api_keys
            app.state.rate_limiter = rate_limiter
            app.state.embedding_http = clients["embedding"]
            await run_migrations(redis)  # before the index loads what they move
            search = await stack.enter_async_context(
                search_runtime(redis, clients["embedding"], settings)
            )
            app.state.gateway = GatewayState(
                settings=settings,
                redis=redis,
                api_keys=api_keys,
                rate_limiter=rate_limiter,
                embedding_http=clients["embedding"],
                inference_http=clients["inference"],
                served_models=served_models(settings, clients["inference"]),
                search=search,
            )
            app.state.ready_checks["redis"] = redis.ping
            app.state.scrape_samplers += [
                redis_sampler(redis),
                disk_sampler(settings.data_dir),
            ]
            mark_started(app)
            yield

    app = base_app(
        service="gateway",
        lifespan=lifespan,
        version=__version__,
        body_limits=settings.body_limits(),
        keyed_paths=lambda path: path.startswith("/v1/"),  # every /v1 route takes a key
        session_cookie=CONSOLE_COOKIE,  # or the web console's session (CSRF-checked)
    )
    app.add_middleware(InferenceSlots)  # gives back inference slots when a response ends
    if settings.gateway_hot_path:  # outermost: the fact lookup skips the layers below
        app.add_middleware(HotReads)
    for router in (
        overview_router,
        stats_router,
        facts_router,
        memory_router,
        docs_router,
        docs_tools_router,
        cache_router,
        rag_router,
        openai_router,
        anthropic_router,
        responses_router,
        llm_router,
        learning_router,
        models_router,
        keys_router,
        audit_router,
    ):
        app.include_router(router)
    app.include_router(openai_model_router)  # after /v1/models/versions
    install_console(app)  # /console, and its cookie as a credential for /v1
    return app
