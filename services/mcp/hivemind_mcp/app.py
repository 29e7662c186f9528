"""The MCP bridge's HTTP app: streamable HTTP at /mcp plus health and metrics on one port.

``/mcp`` runs the MCP server built by :func:`~hivemind_mcp.server.build_server` behind
:class:`~hivemind_mcp.auth.BearerKeyGate`; the caller's own key travels on to the gateway with
every tool call. The session manager (and with it the server's lifespan) lives as long as the app.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
from mcp.server.transport_security import TransportSecuritySettings
from starlette.routing import Route

from hivemind_common.body_limit import DEFAULT_MAX_BODY_BYTES
from hivemind_common.service_app import base_app, mark_started
from hivemind_mcp import __version__
from hivemind_mcp.auth import BearerKeyGate, KeyChecker
from hivemind_mcp.server import build_server, gateway_base_url
from hivemind_mcp.settings import McpSettings
from hivemind_mcp.state import McpState

LOOPBACK = ("127.0.0.1", "localhost", "::1")
MCP_PATH = "/mcp"


def transport_security(settings: McpSettings) -> TransportSecuritySettings | None:
    """DNS-rebinding protection: explicit hosts, the SDK's loopback default, or off when exposed."""
    if settings.allowed_hosts:
        return TransportSecuritySettings(
            enable_dns_rebinding_protection=True, allowed_hosts=list(settings.allowed_hosts)
        )
    if settings.host in LOOPBACK:
        return None  # the SDK allows loopback hosts and origins only
    # Bound to a routable address (containers): every caller needs a key anyway.
    return TransportSecuritySettings(enable_dns_rebinding_protection=False)


def create_app(settings: McpSettings) -> FastAPI:
    """Build the bridge's app; the gateway clients and MCP sessions live in its lifespan."""
    checker = KeyChecker(check_path=settings.auth_check_path, ttl_s=settings.auth_cache_s)
    server = build_server(settings, on_refused_key=checker.forget)
    # Builds the session manager; we mount its ASGI endpoint ourselves, behind the key gate.
    server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        json_response=settings.json_response,
        stateless_http=settings.stateless_http,
        transport_security=transport_security(settings),
        host=settings.host,
        session_idle_timeout=settings.mcp_session_idle_s,
        max_sessions=settings.mcp_max_sessions,
        # the app's own cap (16 MiB): docs_ingest_text takes 2,000,000 characters, which JSON
        # may escape to more than the SDK's default 4 MiB (an HTTP 413, not a tool's answer)
        max_request_body_size=DEFAULT_MAX_BODY_BYTES,
    )
    session_manager = server.session_manager

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        timeout = httpx.Timeout(10.0, connect=settings.gateway_connect_timeout_s)
        async with httpx.AsyncClient(base_url=gateway_base_url(settings), timeout=timeout) as http:
            checker.http = http
            app.state.mcp = McpState(settings, server, http, checker)

            async def gateway_alive() -> None:
                (await http.get("/healthz", timeout=2.0)).raise_for_status()

            app.state.ready_checks["gateway"] = gateway_alive
            async with session_manager.run():
                mark_started(app)
                yield

    app = base_app(service="mcp", lifespan=lifespan, version=__version__)
    endpoint = BearerKeyGate(
        StreamableHTTPASGIApp(session_manager),
        checker,
        sessions=session_manager,
        # stateless: no sessions are kept, and every POST would count as opening one
        per_key=0 if settings.stateless_http else settings.mcp_max_sessions_per_key,
    )
    app.router.routes.append(Route(MCP_PATH, endpoint=endpoint, methods=["GET", "POST", "DELETE"]))
    return app
