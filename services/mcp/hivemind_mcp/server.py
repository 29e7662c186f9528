"""``build_server(settings)``: the MCP server object, its lifespan and the caller's API key.

The lifespan holds one HTTP client to the gateway for every session. Each tool call carries
the key it acts with: over streamable HTTP that is the caller's own bearer key (so tenants
stay apart); over stdio or in memory, where there is no HTTP request, it is the key from
settings (``HIVEMIND_API_KEY``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from hivemind_common.auth import parse_bearer
from hivemind_common.hosts import service_url
from hivemind_mcp import __version__
from hivemind_mcp.gateway import GatewayClient
from hivemind_mcp.metrics import GATEWAY_SECONDS, TOOL_CALLS
from hivemind_mcp.settings import McpSettings

INSTRUCTIONS = (
    "Hive-Mind is the user's persistent memory and local model. Store durable facts with "
    "fact_store and look them up with fact_get / fact_search before asking the user again; keep "
    "notes of the work with memory_store and find them with memory_search; cache expensive tool "
    "results with tool_cache_set / tool_cache_get; queue good or corrected answers with "
    "learning_queue_add so the local model learns from them."
)


@dataclass(frozen=True)
class BridgeState:
    """What every tool call gets from the lifespan."""

    gateway: GatewayClient
    default_key: str | None


BridgeContext = Context[BridgeState, Any]


def gateway_base_url(settings: McpSettings) -> str:
    """The gateway's URL: the setting if given, else the hosts registry."""
    return (settings.gateway_url or service_url("gateway", profile=settings.profile)).rstrip("/")


def caller_key(ctx: BridgeContext) -> str:
    """The API key this call acts with: the HTTP caller's bearer key, else the configured one."""
    headers = ctx.headers
    if headers is not None:
        token = parse_bearer(headers.get("authorization"))
        if token is not None:
            return token
        # An HTTP caller never falls back to the bridge's own key.
        raise ToolError("missing API key: send 'Authorization: Bearer <key>'")
    key = ctx.request_context.lifespan_context.default_key
    if not key:
        raise ToolError("no API key configured for the bridge: set HIVEMIND_API_KEY")
    return key


async def call_gateway(
    ctx: BridgeContext,
    method: str,
    path: str,
    *,
    json: Any = None,
    params: dict[str, Any] | None = None,
) -> Any:
    """One gateway call on behalf of this tool call's caller."""
    state = ctx.request_context.lifespan_context
    params_of_call = ctx.request_context.params or {}
    tool = str(params_of_call.get("name", "unknown"))
    outcome = "error"
    started = time.perf_counter()
    try:
        answer = await state.gateway.call(
            method, path, api_key=caller_key(ctx), json=json, params=params
        )
        outcome = "ok"
        return answer
    finally:
        GATEWAY_SECONDS.labels(tool).observe(time.perf_counter() - started)
        TOOL_CALLS.labels(tool, outcome).inc()


def build_server(
    settings: McpSettings, *, on_refused_key: Callable[[str], None] | None = None
) -> MCPServer[BridgeState]:
    """A fresh MCP server with every Hive-Mind tool; nothing connects until its lifespan runs.

    ``on_refused_key`` hears of every key the gateway refused (the HTTP door forgets it).
    """
    from hivemind_mcp.tools import register_all

    @asynccontextmanager
    async def lifespan(_: MCPServer[BridgeState]) -> AsyncIterator[BridgeState]:
        timeout = httpx.Timeout(
            settings.gateway_timeout_s, connect=settings.gateway_connect_timeout_s
        )
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
        async with httpx.AsyncClient(
            base_url=gateway_base_url(settings), timeout=timeout, limits=limits
        ) as http:
            default_key = settings.api_key.get_secret_value() if settings.api_key else None
            gateway = GatewayClient(http, on_refused_key=on_refused_key)
            yield BridgeState(gateway=gateway, default_key=default_key or None)

    server: MCPServer[BridgeState] = MCPServer(
        "hivemind",
        title="Hive-Mind",
        instructions=INSTRUCTIONS,
        version=__version__,
        lifespan=lifespan,
    )
    register_all(server)
    return server
