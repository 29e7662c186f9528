"""Small shared pieces of the tools: argument types and result shaping."""

from __future__ import annotations

from typing import Annotated, Any

from mcp_types import ToolAnnotations
from pydantic import Field

READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
WRITES = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
DELETES = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False)

Tags = Annotated[
    list[Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]] | None,
    Field(
        description="Labels; a search with tags only returns items carrying every one.",
        max_length=32,
    ),
]
TopK = Annotated[int, Field(ge=1, le=100, description="How many results at most.")]
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
SessionId = Annotated[
    str, Field(pattern=ID_PATTERN, description="The id of a session (see memory_list_sessions).")
]


def as_result(body: Any) -> dict[str, Any]:
    """Tools answer an object: a gateway object as is, anything else under ``result``."""
    if isinstance(body, dict):
        return body
    return {"result": body}
