"""Fact tools: durable key/value knowledge (conventions, settings, decisions)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from hivemind_common.ids import FACT_KEY_PATTERN
from hivemind_mcp.gateway import path_segment
from hivemind_mcp.server import BridgeContext, call_gateway
from hivemind_mcp.tools.shapes import DELETES, READ_ONLY, WRITES, Tags, TopK, as_result

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from hivemind_mcp.server import BridgeState

FactKey = Annotated[
    str,
    Field(
        # the gateway's own rule for fact keys (its route takes a key with '/' as a path)
        pattern=FACT_KEY_PATTERN,
        description=(
            "The fact's name, e.g. 'project.test_command' or 'hosts/aurora': letters, digits "
            "and _ . : @ + / -"
        ),
    ),
]


def _fact_path(key: str) -> str:
    return f"/v1/facts/{path_segment(key)}"


def register(server: MCPServer[BridgeState]) -> None:
    """Add the fact tools."""

    @server.tool(annotations=WRITES)
    async def fact_store(
        key: FactKey,
        value: Annotated[
            str, Field(min_length=1, max_length=65536, description="The fact itself.")
        ],
        ctx: BridgeContext,
        tags: Tags = None,
    ) -> dict[str, Any]:
        """Store a fact under a key, replacing any earlier value of that key."""
        body: dict[str, Any] = {"value": value}
        if tags is not None:
            body["tags"] = tags
        return as_result(await call_gateway(ctx, "PUT", _fact_path(key), json=body))

    @server.tool(annotations=READ_ONLY)
    async def fact_get(key: FactKey, ctx: BridgeContext) -> dict[str, Any]:
        """Read the fact stored under a key; an error says when there is none."""
        return as_result(await call_gateway(ctx, "GET", _fact_path(key)))

    @server.tool(annotations=READ_ONLY)
    async def fact_list(
        ctx: BridgeContext,
        limit: Annotated[int, Field(ge=1, le=200, description="Facts per page.")] = 50,
        cursor: Annotated[
            str | None,
            Field(max_length=200, description="The next_cursor of the previous page."),
        ] = None,
        prefix: Annotated[
            str | None,
            Field(max_length=200, description="Only keys starting with this, e.g. 'project.'."),
        ] = None,
    ) -> dict[str, Any]:
        """List stored facts in key order, a page at a time.

        The answer is {data, count, next_cursor}; pass next_cursor as cursor for the next page.
        """
        params = {"limit": limit, "cursor": cursor, "prefix": prefix}
        return as_result(await call_gateway(ctx, "GET", "/v1/facts", params=params))

    @server.tool(annotations=DELETES)
    async def fact_delete(key: FactKey, ctx: BridgeContext) -> dict[str, Any]:
        """Delete the fact stored under a key; an error says when there was none."""
        body = await call_gateway(ctx, "DELETE", _fact_path(key))
        return as_result(body) if body is not None else {"deleted": key}

    @server.tool(annotations=READ_ONLY)
    async def fact_search(
        query: Annotated[
            str, Field(min_length=1, max_length=4096, description="What you are looking for.")
        ],
        ctx: BridgeContext,
        top_k: TopK = 5,
        min_score: Annotated[
            float | None,
            Field(ge=-1.0, le=2.0, description="Leave out matches scoring below this."),
        ] = None,
    ) -> dict[str, Any]:
        """Find facts by meaning: {data: [{key, value, score}]}, best match first."""
        body: dict[str, Any] = {"query": query, "top_k": top_k}
        if min_score is not None:
            body["min_score"] = min_score
        return as_result(await call_gateway(ctx, "POST", "/v1/facts/search", json=body))

    @server.tool(annotations=READ_ONLY)
    async def fact_suggestions(
        ctx: BridgeContext,
        limit: Annotated[int, Field(ge=1, le=100, description="Suggestions at most.")] = 10,
    ) -> dict[str, Any]:
        """Topics recent questions asked about that no stored fact covers: facts worth adding."""
        params = {"limit": limit}
        return as_result(await call_gateway(ctx, "GET", "/v1/rag/suggestions", params=params))
