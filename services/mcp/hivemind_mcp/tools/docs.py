"""Reference library tools: search a project's docs and code, add a document's text."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from hivemind_common.ids import NAME_PATTERN
from hivemind_mcp.server import BridgeContext, call_gateway
from hivemind_mcp.tools.shapes import READ_ONLY, WRITES, TopK, as_result

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from hivemind_mcp.server import BridgeState

Collection = Annotated[
    str | None,
    Field(pattern=NAME_PATTERN, description="A collection name, e.g. 'default' or 'myproject'."),
]


def register(server: MCPServer[BridgeState]) -> None:
    """Add the reference library tools."""

    @server.tool(annotations=READ_ONLY)
    async def docs_search(
        query: Annotated[
            str, Field(min_length=1, max_length=4000, description="What you are looking for.")
        ],
        ctx: BridgeContext,
        top_k: TopK = 5,
        collection: Collection = None,
        path_prefix: Annotated[
            str | None,
            Field(max_length=1024, description="Only sources under this path, e.g. 'docs/'."),
        ] = None,
        expand: Annotated[
            bool, Field(description="Also return the documents the hits link to or import.")
        ] = False,
    ) -> dict[str, Any]:
        """Search the project's ingested docs and code by meaning and by name.

        The answer is {data: [{source, lines, heading, text, score, cite}], neighbours}; cite a
        passage as its ``cite`` (source:start-end).
        """
        body: dict[str, Any] = {"query": query, "top_k": top_k, "expand": int(expand)}
        if collection is not None:
            body["collection"] = collection
        if path_prefix:
            body["path_prefix"] = path_prefix
        return as_result(await call_gateway(ctx, "POST", "/v1/docs/search", json=body))

    @server.tool(annotations=WRITES)
    async def docs_ingest_text(
        source: Annotated[
            str,
            Field(
                min_length=1,
                max_length=1024,
                pattern=r"^\S",
                description="Where the text comes from: a path or a URL-like name.",
            ),
        ],
        text: Annotated[str, Field(max_length=2_000_000, description="The document's full text.")],
        ctx: BridgeContext,
        collection: Collection = None,
        type: Annotated[
            str | None,
            Field(
                pattern="^(markdown|code|text)$",
                description="markdown, code or text (default: from the source's extension).",
            ),
        ] = None,
    ) -> dict[str, Any]:
        """Add (or replace) one document in the reference library; it is chunked and indexed.

        Sending the same source again replaces it; unchanged text is left as it is.
        """
        body: dict[str, Any] = {"source": source, "text": text}
        if collection is not None:
            body["collection"] = collection
        if type is not None:
            body["type"] = type
        return as_result(await call_gateway(ctx, "POST", "/v1/docs", json=body))
