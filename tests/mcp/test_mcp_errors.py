"""What the model sees when a call goes wrong: a tool error in plain words, never a crash."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from mcp import Client
from mcp_bridge_support import bridge_settings, http_session, running_bridge, stdio_params

from hivemind_mcp.server import build_server
from hivemind_mcp.tools import TOOL_NAMES


def _text(result: Any) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


@pytest.mark.parametrize(
    ("tool", "arguments", "field"),
    [
        ("fact_get", {}, "key"),
        ("fact_get", {"key": ""}, "key"),
        ("fact_get", {"key": "a b"}, "key"),
        ("fact_store", {"key": "k", "value": 3}, "value"),
        ("fact_search", {"query": "q", "top_k": 0}, "top_k"),
        ("memory_search", {"query": "q", "tags": "not-a-list"}, "tags"),
        ("tool_cache_get", {"tool": "a tool with spaces", "input_hash": "abcdef12"}, "tool"),
        ("learning_queue_add", {"messages": [{"role": "robot", "content": "x"}]}, "role"),
        ("llm_complete", {"prefix": "x", "max_tokens": 100000}, "max_tokens"),
    ],
)
async def test_bad_arguments_come_back_as_a_tool_error_naming_the_field(
    tool: str, arguments: dict[str, Any], field: str
) -> None:
    server = build_server(bridge_settings("http://127.0.0.1:9", "hm_a_b"))
    async with Client(server) as client:
        result = await client.call_tool(tool, arguments)
        assert result.is_error
        assert field in _text(result)
        # the server is still there for the next call
        assert {t.name for t in (await client.list_tools()).tools} == set(TOOL_NAMES)


async def test_an_unknown_tool_is_a_tool_error() -> None:
    server = build_server(bridge_settings("http://127.0.0.1:9", "hm_a_b"))
    async with Client(server) as client:
        result = await client.call_tool("web_fetch", {"url": "http://127.0.0.1:6379/"})
    assert result.is_error
    assert "Unknown tool" in _text(result)


async def test_no_tool_takes_a_url_to_fetch() -> None:
    server = build_server(bridge_settings("http://127.0.0.1:9", "hm_a_b"))
    for tool in await server.list_tools():
        properties = set(tool.input_schema.get("properties", {}))
        assert not properties & {"url", "uri", "href", "endpoint"}, tool.name


async def test_a_bridge_without_a_key_says_how_to_set_one() -> None:
    server = build_server(bridge_settings("http://127.0.0.1:9", None))
    async with Client(server) as client:
        result = await client.call_tool("get_stats", {})
    assert result.is_error
    assert "HIVEMIND_API_KEY" in _text(result)


async def test_a_stopped_gateway_is_a_tool_error_over_http_and_the_bridge_lives_on(
    stopping_gateway: Any,
) -> None:
    gateway, key, stack = stopping_gateway
    with running_bridge(bridge_settings(gateway.url)) as url:
        async with http_session(url, key) as client:
            stack.close()  # the gateway goes away under an open session
            result = await client.call_tool("fact_get", {"key": "project.language"})
            assert result.is_error
            assert "unreachable" in _text(result)
            assert {t.name for t in (await client.list_tools()).tools} == set(TOOL_NAMES)
        async with http_session(url, key) as again:  # a key checked before: remembered
            assert (await again.call_tool("fact_get", {"key": "x"})).is_error
        async with httpx.AsyncClient(base_url=url.removesuffix("/mcp"), timeout=5) as http:
            health = await http.get("/healthz")
            ready = await http.get("/readyz")
        assert health.status_code == 200
        assert ready.status_code == 503
        assert "gateway" in ready.json()["reason"]


async def test_a_stopped_gateway_is_a_tool_error_over_stdio(stopping_gateway: Any) -> None:
    gateway, key, stack = stopping_gateway
    async with Client(stdio_params(gateway.url, key)) as client:
        stack.close()
        result = await client.call_tool("memory_list_sessions", {})
        assert result.is_error
        assert "unreachable" in _text(result)
        assert {t.name for t in (await client.list_tools()).tools} == set(TOOL_NAMES)


async def test_a_fact_key_with_a_slash_round_trips(in_memory_server: Any) -> None:
    async with Client(in_memory_server) as client:
        stored = await client.call_tool(
            "fact_store", {"key": "hosts/aurora", "value": "the GPU box, RTX 4090"}
        )
        assert not stored.is_error, _text(stored)
        got = await client.call_tool("fact_get", {"key": "hosts/aurora"})
        assert not got.is_error, _text(got)
        assert "RTX 4090" in _text(got)


_INITIALIZE = {
    "jsonrpc": "2.0", "id": 1, "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {},
               "clientInfo": {"name": "t", "version": "1"}},
}  # fmt: skip


async def test_a_key_the_gateway_cannot_check_opens_no_session() -> None:
    """While the gateway was away any string passed the door, so random keys could fill the
    bridge's session table (1000) and lock every tenant out once the gateway was back."""
    with running_bridge(bridge_settings("http://127.0.0.1:9")) as url:
        async with httpx.AsyncClient(timeout=30) as http:
            for n in range(3):
                got = await http.post(
                    url, json=_INITIALIZE,
                    headers={"Authorization": f"Bearer not-a-key-{n}",
                             "Accept": "application/json, text/event-stream"},
                )  # fmt: skip
                assert got.status_code == 503, got.text
                assert got.headers["retry-after"] == "5"
                assert "cannot check the API key" in got.json()["error"]["message"]


def test_a_stateless_bridge_counts_no_sessions_per_key() -> None:
    """Without sessions every POST looked like one opening: the 33rd request in flight from
    one key was refused as "this key holds 32 open MCP sessions", which it did not."""
    from hivemind_mcp.app import create_app

    def gate(**kw: Any) -> Any:
        app = create_app(bridge_settings("http://127.0.0.1:9", mcp_max_sessions_per_key=3, **kw))
        return next(r for r in app.router.routes if getattr(r, "path", "") == "/mcp").endpoint

    assert gate().per_key == 3
    assert gate(stateless_http=True).per_key == 0
