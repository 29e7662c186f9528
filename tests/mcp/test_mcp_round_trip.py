"""Every tool round-trips through the bridge to a real gateway, Redis, embedder and SmolLM2."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from mcp import Client
from mcp_bridge_support import bridge_settings, http_session, running_bridge, stdio_params

from hivemind_mcp.server import build_server
from hivemind_mcp.tools import TOOL_NAMES

pytestmark = pytest.mark.slow


def _text(result: Any) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


class ToolCaller:
    """Calls tools on one client and remembers which tools were called."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.called: set[str] = set()

    async def ok(self, tool: str, /, **arguments: Any) -> dict[str, Any]:
        self.called.add(tool)
        result = await self.client.call_tool(tool, arguments)
        assert not result.is_error, f"{tool}: {_text(result)}"
        assert isinstance(result.structured_content, dict), tool
        return result.structured_content

    async def error(self, tool: str, /, **arguments: Any) -> str:
        self.called.add(tool)
        result = await self.client.call_tool(tool, arguments)
        assert result.is_error, f"{tool} should have failed"
        return _text(result)


async def exercise_every_tool(client: Client) -> set[str]:
    """One realistic pass over all 21 tools; returns the names called."""
    call = ToolCaller(client)

    stored = await call.ok("fact_store", key="project.test_command", value="make test")
    assert stored["key"] == "project.test_command"
    got = await call.ok("fact_get", key="project.test_command")
    assert got["value"] == "make test"
    listed = await call.ok("fact_list", limit=10)
    assert "project.test_command" in {f["key"] for f in listed["data"]}
    found = await call.ok("fact_search", query="how do I run the test suite?", top_k=3)
    assert found["data"][0]["key"] == "project.test_command"
    await call.ok("fact_suggestions")

    memory = await call.ok(
        "memory_store", text="We chose Redis streams for the job queue.", tags=["decision"]
    )
    recalled = await call.ok("memory_recall", memory_id=memory["id"])
    assert recalled["text"] == "We chose Redis streams for the job queue."
    hits = await call.ok("memory_search", query="which queue do jobs use", tags=["decision"])
    assert hits["data"][0]["id"] == memory["id"]
    sessions = await call.ok("memory_list_sessions")
    assert isinstance(sessions["data"], list)

    text = "# Queue\n\n## Jobs\n\nJobs travel on Redis streams, one consumer group each.\n"
    added = await call.ok("docs_ingest_text", source="docs/queue.md", text=text)
    assert added["data"][0]["status"] == "created"
    passages = await call.ok("docs_search", query="which queue do jobs travel on")
    assert passages["data"][0]["cite"] == "docs/queue.md:1-5"

    input_hash = hashlib.sha256(b'{"q": "hive mind"}').hexdigest()
    await call.ok("tool_cache_set", tool="web_search", input_hash=input_hash, value={"hits": 3})
    cached = await call.ok("tool_cache_get", tool="web_search", input_hash=input_hash)
    assert cached["value"] == {"hits": 3}

    generated = await call.ok("llm_generate", prompt="Say hello.", max_tokens=8)
    assert isinstance(generated["text"], str) and generated["model"]
    explained = await call.ok(
        "llm_code_assist", code="def add(a, b):\n    return a + b\n", task="explain", max_tokens=8
    )
    assert isinstance(explained["text"], str)
    filled = await call.ok(
        "llm_complete", prefix="def add(a, b):\n    return ", suffix="\n", max_tokens=8
    )
    assert isinstance(filled["text"], str)

    await call.ok("fact_delete", key="project.test_command")
    assert "not found" in await call.error("fact_get", key="project.test_command")
    sample = await call.ok(
        "learning_queue_add",
        messages=[
            {"role": "user", "content": "How do I run the tests?"},
            {"role": "assistant", "content": "Run `make test`."},
        ],
        rating=1.0,
    )
    assert sample["id"]
    await call.ok("learning_status")
    await call.ok("model_versions")
    await call.ok("get_stats")

    return call.called


@asynccontextmanager
async def bridge_client(transport: str, gateway: Any, key: str) -> AsyncIterator[Client]:
    if transport == "memory":
        async with Client(build_server(bridge_settings(gateway.url, key))) as client:
            yield client
    elif transport == "stdio":
        async with Client(stdio_params(gateway.url, key)) as client:
            yield client
    else:
        with running_bridge(bridge_settings(gateway.url)) as url:
            async with http_session(url, key) as client:
                yield client


@pytest.fixture
def acme_writer(full_gateway: Any) -> str:
    return full_gateway.key("acme", "write")


@pytest.mark.parametrize("transport", ["memory", "stdio", "http"])
async def test_every_tool_round_trips_through_the_bridge(
    transport: str, full_gateway: Any, acme_writer: str
) -> None:
    async with bridge_client(transport, full_gateway, acme_writer) as client:
        called = await exercise_every_tool(client)
    assert called == set(TOOL_NAMES)
