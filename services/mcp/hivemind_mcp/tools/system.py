"""System tools: model versions and usage statistics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hivemind_mcp.server import BridgeContext, call_gateway
from hivemind_mcp.tools.shapes import READ_ONLY, as_result

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from hivemind_mcp.server import BridgeState


def register(server: MCPServer[BridgeState]) -> None:
    """Add the system tools."""

    @server.tool(annotations=READ_ONLY)
    async def model_versions(ctx: BridgeContext) -> dict[str, Any]:
        """The local model's versions: which one serves, the previous one, and their metrics."""
        return as_result(await call_gateway(ctx, "GET", "/v1/models/versions"))

    @server.tool(annotations=READ_ONLY)
    async def get_stats(ctx: BridgeContext) -> dict[str, Any]:
        """Usage figures of this tenant: facts, memories, sessions, cache hits, retrieval."""
        return as_result(await call_gateway(ctx, "GET", "/v1/stats"))
