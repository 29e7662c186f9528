"""The bridge speaks MCP in memory, over stdio and over streamable HTTP, behind a key check."""

from __future__ import annotations

import httpx
import pytest
from mcp import Client
from mcp_bridge_support import assert_all_tools_listed, http_session, stdio_params

from hivemind_mcp.app import transport_security
from hivemind_mcp.settings import McpSettings
from hivemind_mcp.tools import TOOL_NAMES
from support.gateway import RunningGateway


async def test_in_memory_lists_every_tool_with_an_input_schema(in_memory_server: object) -> None:
    async with Client(in_memory_server) as client:  # type: ignore[arg-type]
        listed = await client.list_tools()
    assert_all_tools_listed(listed.tools)


async def test_stdio_subprocess_lists_every_tool(gateway: RunningGateway, acme_key: str) -> None:
    async with Client(stdio_params(gateway.url, acme_key)) as client:
        listed = await client.list_tools()
    assert_all_tools_listed(listed.tools)


async def test_streamable_http_lists_every_tool_for_a_valid_key(
    bridge_url: str, acme_key: str
) -> None:
    async with http_session(bridge_url, acme_key) as client:
        listed = await client.list_tools()
    assert_all_tools_listed(listed.tools)


def test_streamable_http_refuses_a_request_without_a_key(bridge_url: str) -> None:
    response = httpx.post(bridge_url, json=_initialize(), headers=_mcp_headers(), timeout=10)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "missing API key" in response.json()["error"]["message"]


def test_streamable_http_refuses_a_key_the_gateway_does_not_know(bridge_url: str) -> None:
    headers = {**_mcp_headers(), "Authorization": "Bearer hm_000000000000_notarealkey"}
    response = httpx.post(bridge_url, json=_initialize(), headers=headers, timeout=10)
    assert response.status_code == 401
    assert "refused" in response.json()["error"]["message"]


def test_streamable_http_refuses_a_key_with_non_ascii_bytes_with_401(bridge_url: str) -> None:
    headers = [*_mcp_headers().items(), ("Authorization", "Bearer hm_000000000000_\xe9t\xe9")]
    raw = [(k.encode(), v.encode("latin-1")) for k, v in headers]
    response = httpx.post(bridge_url, headers=raw, json=_initialize(), timeout=10)
    assert response.status_code == 401, response.text


async def test_the_official_client_is_told_its_key_is_missing(bridge_url: str) -> None:
    with pytest.raises(BaseException) as raised:  # the SDK raises an exception group
        async with http_session(bridge_url, None) as client:
            await client.list_tools()
    messages = [str(e) for e in _leaves(raised.value)]
    assert any("missing API key" in m for m in messages), messages


def test_health_and_metrics_stay_beside_the_mcp_endpoint(bridge_url: str) -> None:
    base = bridge_url.removesuffix("/mcp")
    assert httpx.get(base + "/healthz", timeout=5).json()["service"] == "mcp"
    assert httpx.get(base + "/readyz", timeout=5).status_code == 200
    assert "http_requests" in httpx.get(base + "/metrics", timeout=5).text


def test_tool_names_match_the_contract() -> None:
    assert len(TOOL_NAMES) == len(set(TOOL_NAMES)) == 21


def _initialize() -> dict[str, object]:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "test", "version": "0"},
        },
    }


def _mcp_headers() -> dict[str, str]:
    return {"Accept": "application/json, text/event-stream"}


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc, *([exc.__cause__] if exc.__cause__ else [])]


def test_a_loopback_bridge_refuses_a_foreign_host_header(bridge_url: str, acme_key: str) -> None:
    headers = {**_mcp_headers(), "Authorization": f"Bearer {acme_key}", "Host": "evil.example"}
    response = httpx.post(bridge_url, json=_initialize(), headers=headers, timeout=10)
    assert response.status_code == 421


@pytest.mark.parametrize(
    ("host", "allowed", "protected"),
    [
        ("127.0.0.1", [], None),  # the SDK's loopback-only default
        ("0.0.0.0", [], False),  # exposed: the key is the guard
        ("0.0.0.0", ["r720xd:8091"], True),
    ],
)
def test_dns_rebinding_protection_follows_where_the_bridge_listens(
    host: str, allowed: list[str], protected: bool | None
) -> None:
    settings = McpSettings(gateway_url="http://127.0.0.1:9", host=host, allowed_hosts=allowed)
    security = transport_security(settings)
    if protected is None:
        assert security is None
    else:
        assert security is not None
        assert security.enable_dns_rebinding_protection is protected


async def test_tool_calls_and_key_checks_show_in_the_bridges_metrics(
    bridge_url: str, acme_key: str
) -> None:
    async with http_session(bridge_url, acme_key) as client:
        await client.call_tool("fact_get", {"key": "nothing.here"})
    async with httpx.AsyncClient(timeout=5) as http:
        text = (await http.get(bridge_url.removesuffix("/mcp") + "/metrics")).text
    assert 'hivemind_mcp_tool_calls_total{outcome="error",tool="fact_get"}' in text
    assert 'hivemind_mcp_gateway_seconds_count{tool="fact_get"}' in text
    assert 'hivemind_mcp_key_checks_total{result="accepted"}' in text


def test_a_claude_code_style_initialize_with_a_key_gets_a_session(
    bridge_url: str, acme_key: str
) -> None:
    headers = {**_mcp_headers(), "Authorization": f"Bearer {acme_key}"}
    response = httpx.post(bridge_url, json=_initialize(), headers=headers, timeout=10)
    assert response.status_code == 200
    assert response.headers.get("mcp-session-id")
    assert '"name":"hivemind"' in response.text.replace(" ", "")


def test_a_session_serves_only_the_key_that_opened_it_and_keys_hold_few(
    gateway: RunningGateway,
) -> None:
    """Sessions were not tied to a key: any valid key holding a session id could use or close
    it; and one key could open sessions until the bridge's pool was full for every tenant."""
    from mcp_bridge_support import bridge_settings, running_bridge

    acme, globex = gateway.key("acme", "write"), gateway.key("globex", "read")
    settings = bridge_settings(gateway.url, mcp_max_sessions_per_key=2)
    with running_bridge(settings) as url:

        def open_session(key: str) -> httpx.Response:
            headers = {**_mcp_headers(), "Authorization": f"Bearer {key}"}
            return httpx.post(url, json=_initialize(), headers=headers, timeout=10)

        first = open_session(acme)
        session = first.headers["mcp-session-id"]
        assert open_session(acme).status_code == 200
        third = open_session(acme)
        assert third.status_code == 429 and "2 open MCP sessions" in third.text
        assert open_session(globex).status_code == 200  # another key is not held back
        foreign = {**_mcp_headers(), "Authorization": f"Bearer {globex}",
                   "mcp-session-id": session}  # fmt: skip
        assert httpx.delete(url, headers=foreign, timeout=10).status_code == 404
        own = {**foreign, "Authorization": f"Bearer {acme}"}
        assert httpx.delete(url, headers=own, timeout=10).status_code in (200, 204)
        assert open_session(acme).status_code == 200  # a closed session frees its place
