"""Fixtures of the MCP bridge tests: the bridge over each transport against a real gateway."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from mcp_bridge_support import bridge_settings, running_bridge

from hivemind_mcp.server import build_server
from support.gateway import RunningGateway


@pytest.fixture
def acme_key(gateway: RunningGateway) -> str:
    return gateway.key("acme", "write")


@pytest.fixture
def bridge_url(gateway: RunningGateway) -> Iterator[str]:
    """The bridge's /mcp over HTTP, in front of the test gateway."""
    with running_bridge(bridge_settings(gateway.url)) as url:
        yield url


@pytest.fixture
def in_memory_server(gateway: RunningGateway, acme_key: str) -> Any:
    """The MCP server object itself, acting with acme's key (as over stdio)."""
    return build_server(bridge_settings(gateway.url, acme_key))
