"""The Hive-Mind tools, one module per gateway surface; ``register_all`` adds them to a server."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hivemind_mcp.tools import docs, facts, learning, llm, memory, system

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from hivemind_mcp.server import BridgeState

TOOL_NAMES = (
    "memory_store",
    "memory_recall",
    "memory_search",
    "memory_list_sessions",
    "fact_store",
    "fact_get",
    "fact_list",
    "fact_delete",
    "fact_search",
    "fact_suggestions",
    "docs_search",
    "docs_ingest_text",
    "tool_cache_get",
    "tool_cache_set",
    "learning_queue_add",
    "learning_status",
    "llm_generate",
    "llm_code_assist",
    "llm_complete",
    "model_versions",
    "get_stats",
)


def register_all(server: MCPServer[BridgeState]) -> None:
    """Add every tool of the contract to ``server``."""
    for module in (memory, facts, docs, learning, llm, system):
        module.register(server)


__all__ = ["TOOL_NAMES", "register_all"]
