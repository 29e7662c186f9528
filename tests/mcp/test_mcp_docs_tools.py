"""docs_search and docs_ingest_text through the official MCP client, against a real gateway."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client
from mcp_bridge_support import bridge_settings

from hivemind_mcp.server import build_server
from support.gateway import RunningGateway

GUIDE = "# Guide\n\n## Releases\n\nTag the release, then run `make publish`.\n"


async def _call(client: Client, tool: str, **arguments: Any) -> Any:
    return await client.call_tool(tool, arguments)


@pytest.fixture
def keys(gateway: RunningGateway) -> tuple[str, str]:
    return gateway.key("acme", "write"), gateway.key("globex", "write")


async def test_docs_tools_ingest_and_search_with_citations(
    gateway: RunningGateway, keys: tuple[str, str]
) -> None:
    key, other = keys
    async with Client(build_server(bridge_settings(gateway.url, key))) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"docs_search", "docs_ingest_text"} <= names
        added = await _call(client, "docs_ingest_text", source="docs/guide.md", text=GUIDE,
                            collection="handbook")  # fmt: skip
        assert not added.is_error, added.content
        assert added.structured_content["data"][0]["chunks"] == 1
        again = await _call(client, "docs_ingest_text", source="docs/guide.md", text=GUIDE,
                            collection="handbook")  # fmt: skip
        assert again.structured_content["data"][0]["status"] == "unchanged"
        found = await _call(client, "docs_search", query="how do I publish a release",
                            collection="handbook", path_prefix="docs/")  # fmt: skip
        hit = found.structured_content["data"][0]
        assert hit["cite"] == "docs/guide.md:1-5" and hit["heading"] == "Guide > Releases"
        bad = await _call(client, "docs_ingest_text", source="x.md", text="t", type="pdf")
        assert bad.is_error
    async with Client(build_server(bridge_settings(gateway.url, other))) as client:
        found = await _call(client, "docs_search", query="how do I publish a release")
        assert found.structured_content["data"] == []  # another tenant sees none of it


async def test_a_large_document_over_http_reaches_the_tool(
    bridge_url: str, keys: tuple[str, str]
) -> None:
    """1.4M CJK characters are 4.2 MB of JSON: the SDK's default 4 MiB body cap answered an
    HTTP 413 for a text the tool's own limit (2,000,000 characters) allows."""
    from mcp_bridge_support import http_session

    async with http_session(bridge_url, keys[0]) as client:
        # an unknown type: the tool refuses it at once, once the body got through
        answer = await _call(client, "docs_ingest_text", source="big.md",
                             text="日" * 1_400_000, type="pdf")  # fmt: skip
        assert answer.is_error
