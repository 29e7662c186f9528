"""Memory tools: notes of the work, kept per session and found again by meaning."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from hivemind_mcp.gateway import path_segment
from hivemind_mcp.server import BridgeContext, call_gateway
from hivemind_mcp.tools.shapes import (
    ID_PATTERN,
    READ_ONLY,
    WRITES,
    SessionId,
    Tags,
    TopK,
    as_result,
)

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from hivemind_mcp.server import BridgeState

MemoryText = Annotated[
    str, Field(min_length=1, max_length=65536, description="What to remember, in plain words.")
]


def register(server: MCPServer[BridgeState]) -> None:
    """Add the memory tools."""

    @server.tool(annotations=WRITES)
    async def memory_store(
        text: MemoryText,
        ctx: BridgeContext,
        session_id: SessionId | None = None,
        tags: Tags = None,
        metadata: Annotated[
            dict[str, Any] | None, Field(description="Extra JSON fields kept with the memory.")
        ] = None,
    ) -> dict[str, Any]:
        """Remember a note (a decision, a finding, what was tried) for later sessions.

        Returns the stored memory with its id. Give session_id to file it under the current
        session and tags to find it by label.
        """
        body: dict[str, Any] = {"text": text}
        if session_id is not None:
            body["session_id"] = session_id
        if tags is not None:
            body["tags"] = tags
        if metadata is not None:
            body["metadata"] = metadata
        return as_result(await call_gateway(ctx, "POST", "/v1/memories", json=body))

    @server.tool(annotations=READ_ONLY)
    async def memory_recall(
        memory_id: Annotated[
            str, Field(pattern=ID_PATTERN, description="The id memory_store returned.")
        ],
        ctx: BridgeContext,
    ) -> dict[str, Any]:
        """Fetch one stored memory by its id (text, session, tags, metadata)."""
        path = f"/v1/memories/{path_segment(memory_id)}"
        return as_result(await call_gateway(ctx, "GET", path))

    @server.tool(annotations=READ_ONLY)
    async def memory_search(
        query: Annotated[
            str, Field(min_length=1, max_length=4096, description="What you are looking for.")
        ],
        ctx: BridgeContext,
        top_k: TopK = 5,
        session_id: SessionId | None = None,
        tags: Tags = None,
    ) -> dict[str, Any]:
        """Find stored memories by meaning, best match first, each with a similarity score.

        Narrow it to one session with session_id, or to memories carrying every given tag.
        """
        body: dict[str, Any] = {"query": query, "top_k": top_k}
        if session_id is not None:
            body["session_id"] = session_id
        if tags is not None:
            body["tags"] = tags
        return as_result(await call_gateway(ctx, "POST", "/v1/memories/search", json=body))

    @server.tool(annotations=READ_ONLY)
    async def memory_list_sessions(
        ctx: BridgeContext,
        limit: Annotated[int, Field(ge=1, le=200, description="Sessions per page.")] = 50,
        cursor: Annotated[
            str | None, Field(max_length=200, description="The next_cursor of the previous page.")
        ] = None,
        preview_chars: Annotated[
            int | None,
            Field(
                ge=0,
                le=200_000,
                description="Cut each working context to this many characters (a context "
                "can be 200,000); leave it out for whole contexts.",
            ),
        ] = None,
    ) -> dict[str, Any]:
        """List this tenant's sessions, most recently written first.

        Each has its id, task, working context (context_chars is its whole length), files and
        how many memories it holds.
        """
        params: dict[str, Any] = {"limit": limit, "cursor": cursor}
        if preview_chars is not None:
            params["preview_chars"] = preview_chars
        return as_result(await call_gateway(ctx, "GET", "/v1/sessions", params=params))
