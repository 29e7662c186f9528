"""LLM tools: the local model for quick drafts, code help and fill-in-the-middle."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field

from hivemind_mcp.server import BridgeContext, call_gateway
from hivemind_mcp.tools.shapes import READ_ONLY, as_result

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from hivemind_mcp.server import BridgeState

MaxTokens = Annotated[
    int | None, Field(ge=1, le=2048, description="Upper bound on the tokens generated.")
]
Language = Annotated[
    str | None, Field(max_length=40, description="The code's language, e.g. 'python'.")
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
            Literal["chat", "concise", "detailed", "creative", "json"] | None,
            Field(description="The style of answer wanted (default 'chat')."),
        ] = None,
        max_tokens: MaxTokens = None,
    ) -> dict[str, Any]:
        """Ask the local Hive-Mind model (cheap, private, small) to write a text: {text, model}."""
        body: dict[str, Any] = {"prompt": prompt}
        if mode is not None:
            body["mode"] = mode
        body = _with_max_tokens(body, max_tokens)
        return as_result(await call_gateway(ctx, "POST", "/v1/llm/generate", json=body))

    @server.tool(annotations=READ_ONLY)
    async def llm_code_assist(
        code: Annotated[str, Field(min_length=1, max_length=65536, description="The code.")],
        ctx: BridgeContext,
        task: Annotated[
            str,
            Field(
                min_length=1,
                max_length=500,
                description=(
                    "What to do: explain, review, fix, refactor, document, test, complete, "
                    "or an instruction in your own words."
                ),
            ),
        ] = "explain",
        language: Language = None,
        max_tokens: MaxTokens = None,
    ) -> dict[str, Any]:
        """Have the local model explain, review, fix, refactor, document or test some code."""
        body: dict[str, Any] = {"code": code, "task": task}
        if language:
            body["language"] = language
        body = _with_max_tokens(body, max_tokens)
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
        language: Language = None,
        max_tokens: MaxTokens = None,
    ) -> dict[str, Any]:
        """Fill in the middle: the local model writes what goes between prefix and suffix."""
        body: dict[str, Any] = {"prefix": prefix, "suffix": suffix}
        if language:
            body["language"] = language
        body = _with_max_tokens(body, max_tokens)
        return as_result(await call_gateway(ctx, "POST", "/v1/llm/complete", json=body))
