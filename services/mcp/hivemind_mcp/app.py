"""The MCP bridge's HTTP app: streamable HTTP at /mcp plus health and metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from hivemind_common.hosts import service_url
from hivemind_common.service_app import base_app, mark_started
from hivemind_mcp import __version__
from hivemind_mcp.settings import McpSettings


def create_app(settings: McpSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        base = settings.gateway_url or service_url("gateway", profile=settings.profile)
        async with httpx.AsyncClient(base_url=base, timeout=settings.gateway_timeout_s) as http:
            app.state.gateway_http = http

            async def gateway_alive() -> None:
                (await http.get("/healthz", timeout=2.0)).raise_for_status()

            app.state.ready_checks["gateway"] = gateway_alive
            mark_started(app)
            yield

    return base_app(service="mcp", lifespan=lifespan, version=__version__)
