"""Fixtures of the MCP bridge tests: the bridge over each transport against a real gateway."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from mcp_bridge_support import bridge_settings, running_bridge

from hivemind_mcp.server import build_server
from support.gateway import RunningGateway, running_gateway


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


@pytest.fixture
def stopping_gateway(redis_url: str, internal_token: str, data_dir: Path) -> Iterator[Any]:
    """A gateway of this test's own and acme's key; the test may stop it (``stack.close()``)."""
    stack = ExitStack()
    gw = stack.enter_context(
        running_gateway(
            redis_url,
            internal_token,
            data_dir,
            embedding_url="http://127.0.0.1:9",
            inference_url="http://127.0.0.1:9",
            trainer_url="http://127.0.0.1:9",
        )
    )
    with stack:
        yield gw, gw.key("acme", "write"), stack
