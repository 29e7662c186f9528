"""Small shared pieces of the tools: argument types and result shaping."""

from __future__ import annotations

from typing import Annotated, Any

from mcp_types import ToolAnnotations
from pydantic import Field

from hivemind_common.ids import ID_PATTERN, MAX_TAGS, TAG_PATTERN

READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
WRITES = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
DELETES = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False)

Tags = Annotated[
    list[Annotated[str, Field(pattern=TAG_PATTERN)]] | None,
    Field(
        description="Labels; a search with tags only returns items carrying every one.",
        max_length=MAX_TAGS,
    ),
]
TopK = Annotated[int, Field(ge=1, le=100, description="How many results at most.")]
SessionId = Annotated[
    str, Field(pattern=ID_PATTERN, description="The id of a session (see memory_list_sessions).")
]


def as_result(body: Any) -> dict[str, Any]:
    """Tools answer an object: a gateway object as is, anything else under ``result``."""
    if isinstance(body, dict):
        return body
    return {"result": body}
