"""Session fixtures: real Redis servers and per-test clean databases."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from support.redis_servers import RedisProcess, standalone_redis

pytest_plugins: list[str] = ["support.redis_topologies"]

REPO_ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HIVEMIND_HOSTS_FILE", str(REPO_ROOT / "hosts.yaml"))
# a gateway started as a process by a test (`hivemind up`, the CLI tests) runs one worker
os.environ.setdefault("HIVEMIND_GATEWAY_WORKERS", "1")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """One standalone redis-server for the whole session."""
    with standalone_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisProcess) -> Iterator[str]:
    """The standalone server's URL, flushed before each test."""
    redis_server.client().flushall()
    yield redis_server.url


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[object]:
    from hivemind_common.redis import connect_redis

    client = connect_redis(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def internal_token() -> str:
    return "test-internal-token-not-secret"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "var"
    d.mkdir()
    return d


@pytest.fixture
def gateway(redis_url: str, internal_token: str, data_dir: Path) -> Iterator[object]:
    """A gateway with no embedding or inference behind it (they point at a closed port)."""
    from support.gateway import running_gateway

    with running_gateway(
        redis_url,
        internal_token,
        data_dir,
        embedding_url="http://127.0.0.1:9",
        inference_url="http://127.0.0.1:9",
        trainer_url="http://127.0.0.1:9",
    ) as gw:
        yield gw
