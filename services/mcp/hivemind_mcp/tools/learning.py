"""Tool-cache and learning tools: reuse expensive results, feed the local model's training."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, Field

from hivemind_common.ids import NAME_PATTERN, TOKEN_PATTERN
from hivemind_mcp.gateway import path_segment
from hivemind_mcp.server import BridgeContext, call_gateway
from hivemind_mcp.tools.shapes import READ_ONLY, WRITES, as_result

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from hivemind_mcp.server import BridgeState

ToolName = Annotated[
    str,
    Field(
        pattern=NAME_PATTERN,
        description="The tool whose result is cached, e.g. 'web_search'.",
    ),
]
InputHash = Annotated[
    str,
    Field(
        pattern=TOKEN_PATTERN,
        description="A hash of the tool's input (e.g. hex SHA-256 of its JSON arguments).",
    ),
]


class ChatMessage(BaseModel):
    """One turn of the conversation to learn from."""

    role: Literal["system", "user", "assistant"]
    content: Annotated[str, Field(max_length=32000)]


def _cache_path(tool: str, input_hash: str) -> str:
    return f"/v1/cache/{path_segment(tool)}/{path_segment(input_hash)}"


def register(server: MCPServer[BridgeState]) -> None:
    """Add the tool-cache and learning tools."""

    @server.tool(annotations=READ_ONLY)
    async def tool_cache_get(
        tool: ToolName, input_hash: InputHash, ctx: BridgeContext
    ) -> dict[str, Any]:
        """Look up a cached tool result; an error says when nothing (or nothing fresh) is cached."""
        return as_result(await call_gateway(ctx, "GET", _cache_path(tool, input_hash)))

    @server.tool(annotations=WRITES)
    async def tool_cache_set(
        tool: ToolName,
        input_hash: InputHash,
        value: Annotated[Any, Field(description="The result to cache (any JSON value).")],
        ctx: BridgeContext,
        ttl_s: Annotated[
            int | None, Field(ge=1, le=30 * 86400, description="Seconds to keep it.")
        ] = None,
    ) -> dict[str, Any]:
        """Cache a tool's result under its input hash, so the same call can be skipped later."""
        body: dict[str, Any] = {"value": value}
        if ttl_s is not None:
            body["ttl_s"] = ttl_s
        path = _cache_path(tool, input_hash)
        answer = await call_gateway(ctx, "PUT", path, json=body)
        return as_result(answer) if answer is not None else {"tool": tool, "input_hash": input_hash}

    @server.tool(annotations=WRITES)
    async def learning_queue_add(
        messages: Annotated[
            list[ChatMessage],
            Field(
                min_length=1,
                max_length=64,
                description="The conversation, oldest first, with at least one user turn.",
            ),
        ],
        ctx: BridgeContext,
        rating: Annotated[
            float | None,
            Field(ge=-1.0, le=1.0, description="How good the last answer was: -1 bad to 1 good."),
        ] = None,
        correction: Annotated[
            str | None,
            Field(max_length=32000, description="The answer the assistant should have given."),
        ] = None,
    ) -> dict[str, Any]:
        """Queue a conversation (with a rating or a corrected answer) for the local model to learn.

        Returns the sample's id. Use it for answers that were notably good, or wrong and then fixed.
        """
        body: dict[str, Any] = {"messages": [m.model_dump() for m in messages], "source": "mcp"}
        if rating is not None:
            body["rating"] = rating
        if correction is not None:
            body["correction"] = correction
        return as_result(await call_gateway(ctx, "POST", "/v1/learning/samples", json=body))

    @server.tool(annotations=READ_ONLY)
    async def learning_status(ctx: BridgeContext) -> dict[str, Any]:
        """The learning loop's state: samples collected, training jobs, the version being served."""
        return as_result(await call_gateway(ctx, "GET", "/v1/learning/status"))
