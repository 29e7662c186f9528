"""Helpers of the MCP bridge tests: the bridge over each transport, and what every tool list has."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from hivemind_mcp.app import create_app
from hivemind_mcp.settings import McpSettings
from support.servers import serve_app


def bridge_settings(gateway_url: str, api_key: str | None = None, **kw: Any) -> McpSettings:
    """Settings of a bridge that talks to ``gateway_url`` (no registry, no files)."""
    return McpSettings(gateway_url=gateway_url, api_key=api_key, **kw)


@contextmanager
def running_bridge(settings: McpSettings) -> Iterator[str]:
    """The bridge's HTTP app on a free port; yields the URL of its /mcp endpoint."""
    with serve_app(create_app(settings)) as base:
        yield base + "/mcp"


@asynccontextmanager
async def http_session(url: str, key: str | None) -> AsyncIterator[Client]:
    """An official MCP client over streamable HTTP, sending ``key`` as its bearer key."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


def stdio_params(gateway_url: str, api_key: str | None) -> StdioServerParameters:
    """How Claude Code would spawn the bridge: `hivemind mcp` with the key in the environment."""
    env = {
        "HIVEMIND_GATEWAY_URL": gateway_url,
        "HIVEMIND_LOG_LEVEL": "WARNING",
        "HIVEMIND_HOSTS_FILE": os.environ["HIVEMIND_HOSTS_FILE"],
    }
    if api_key:
        env["HIVEMIND_API_KEY"] = api_key
    hivemind = Path(sys.executable).with_name("hivemind")
    return StdioServerParameters(command=str(hivemind), args=["mcp"], env=env)


def assert_all_tools_listed(tools: list[Any]) -> None:
    """Every tool of the contract is listed once, described, with an object input schema."""
    from hivemind_mcp.tools import TOOL_NAMES

    by_name = {t.name: t for t in tools}
    assert sorted(by_name) == sorted(TOOL_NAMES)
    for tool in tools:
        assert tool.description and len(tool.description) > 20, tool.name
        assert tool.input_schema["type"] == "object", tool.name
        assert "ctx" not in tool.input_schema.get("properties", {}), tool.name
