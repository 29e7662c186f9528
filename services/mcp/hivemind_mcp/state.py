"""The MCP bridge's state: one typed object, made once by the lifespan."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from mcp.server.mcpserver import MCPServer

from hivemind_mcp.auth import KeyChecker
from hivemind_mcp.server import BridgeState
from hivemind_mcp.settings import McpSettings


@dataclass(eq=False)
class McpState:
    """What one bridge process holds (``app.state.mcp``): the MCP server, the gateway client
    every tool call and key check uses, and the cache of checked keys."""

    settings: McpSettings
    server: MCPServer[BridgeState]
    gateway_http: httpx.AsyncClient
    key_checker: KeyChecker
