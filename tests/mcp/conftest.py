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
from support.servers import serve_app


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


FULL_TOKEN = "test-internal-token-not-secret"


@pytest.fixture(scope="session")
def mcp_inference_url(redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An inference service on the shipped SmolLM2 (small context), for the llm_* tools."""
    from hivemind_inference.app import create_app
    from hivemind_inference.settings import InferenceSettings

    settings = InferenceSettings(
        redis_url=redis_server.url,
        internal_token=FULL_TOKEN,
        data_dir=tmp_path_factory.mktemp("mcp-inference-var"),
        n_ctx=1024,
        threads=2,
        max_tokens_default=16,
    )
    with serve_app(create_app(settings), ready_path="/readyz") as url:
        yield url


@pytest.fixture
def full_gateway(redis_url: str, data_dir: Path, mcp_inference_url: str) -> Iterator[Any]:
    """A gateway with the real embedding and inference services behind it."""
    from support.embedding import shared_embedding_url

    with running_gateway(
        redis_url,
        FULL_TOKEN,
        data_dir,
        embedding_url=shared_embedding_url(FULL_TOKEN),
        inference_url=mcp_inference_url,
        trainer_url="http://127.0.0.1:9",
    ) as gw:
        yield gw
