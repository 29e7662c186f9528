"""LLM tools: the local model for quick drafts, code help and fill-in-the-middle."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from hivemind_mcp.server import BridgeContext, call_gateway
from hivemind_mcp.tools.shapes import READ_ONLY, as_result

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from hivemind_mcp.server import BridgeState

MaxTokens = Annotated[
    int | None, Field(ge=1, le=4096, description="Upper bound on the tokens generated.")
]


def _with_max_tokens(body: dict[str, Any], max_tokens: int | None) -> dict[str, Any]:
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return body


def register(server: MCPServer[BridgeState]) -> None:
    """Add the LLM helper tools."""

    @server.tool(annotations=READ_ONLY)
    async def llm_generate(
        prompt: Annotated[str, Field(min_length=1, max_length=65536, description="The prompt.")],
        ctx: BridgeContext,
        mode: Annotated[
            str | None,
            Field(
                max_length=32,
                description="The kind of answer wanted (e.g. 'general', 'code', 'summary').",
            ),
        ] = None,
        max_tokens: MaxTokens = None,
    ) -> dict[str, Any]:
        """Ask the local Hive-Mind model (cheap, private, small) to write a text."""
        body: dict[str, Any] = {"prompt": prompt}
        if mode is not None:
            body["mode"] = mode
        body = _with_max_tokens(body, max_tokens)
        return as_result(await call_gateway(ctx, "POST", "/v1/llm/generate", json=body))

    @server.tool(annotations=READ_ONLY)
    async def llm_code_assist(
        code: Annotated[str, Field(min_length=1, max_length=65536, description="The code.")],
        task: Annotated[
            str,
            Field(
                min_length=1,
                max_length=64,
                description="What to do with it (e.g. 'explain', 'review', 'fix', 'document').",
            ),
        ],
        ctx: BridgeContext,
        language: Annotated[
            str, Field(min_length=1, max_length=32, description="The code's language.")
        ] = "python",
        max_tokens: MaxTokens = None,
    ) -> dict[str, Any]:
        """Have the local model explain, review, fix or document a piece of code."""
        body = _with_max_tokens({"code": code, "task": task, "language": language}, max_tokens)
        return as_result(await call_gateway(ctx, "POST", "/v1/llm/code-assist", json=body))

    @server.tool(annotations=READ_ONLY)
    async def llm_complete(
        prefix: Annotated[
            str, Field(min_length=1, max_length=65536, description="The code before the gap.")
        ],
        ctx: BridgeContext,
        suffix: Annotated[
            str, Field(max_length=65536, description="The code after the gap, if any.")
        ] = "",
        max_tokens: MaxTokens = None,
    ) -> dict[str, Any]:
        """Fill in the middle: the local model writes what goes between prefix and suffix."""
        body = _with_max_tokens({"prefix": prefix, "suffix": suffix}, max_tokens)
        return as_result(await call_gateway(ctx, "POST", "/v1/llm/complete", json=body))
