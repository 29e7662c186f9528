"""Odd text in any tool's arguments is a tool error naming the field, before any gateway call."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client
from mcp_bridge_support import bridge_settings

from hivemind_mcp.server import build_server


def _text(result: Any) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


@pytest.mark.parametrize(
    ("tool", "arguments", "field", "code"),
    [
        ("fact_store", {"key": "k", "value": "v\ud800"}, "value", "U+D800"),
        ("fact_search", {"query": "q\x00"}, "query", "U+0000"),
        ("memory_store", {"text": "note", "metadata": {"a": "\x1b"}}, "metadata.a", "U+001B"),
        (
            "tool_cache_set",
            {"tool": "t", "input_hash": "abc", "value": ["\udfff"]},
            "value.0",
            "U+DFFF",
        ),
        (
            "learning_queue_add",
            {"messages": [{"role": "user", "content": "hi\x07"}]},
            "messages.0.content",
            "U+0007",
        ),
        ("llm_generate", {"prompt": "p\ud800"}, "prompt", "U+D800"),
        ("llm_complete", {"prefix": "a", "suffix": "\x00"}, "suffix", "U+0000"),
    ],
)
async def test_odd_text_is_a_tool_error_naming_the_field(
    tool: str, arguments: dict[str, Any], field: str, code: str
) -> None:
    # the gateway address is a closed port: the refusal must come before any call to it
    server = build_server(bridge_settings("http://127.0.0.1:9", "hm_a_b"))
    async with Client(server) as client:
        result = await client.call_tool(tool, arguments)
    assert result.is_error
    message = _text(result)
    # pydantic itself refuses a lone surrogate in a typed str argument ("not a unicode string")
    assert field in message and (code in message or "unicode" in message), message
    assert "unreachable" not in message
