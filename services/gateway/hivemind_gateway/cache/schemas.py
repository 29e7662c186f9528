"""Bodies of the tool cache: any JSON value a tool produced, for a while."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hivemind_common import keys
from hivemind_common.text import InputModel, JsonValue


class CacheEntryCreate(InputModel):
    """``PUT /v1/cache/{tool}/{input_hash}``."""

    model_config = ConfigDict(extra="forbid")

    value: JsonValue = Field(description="any JSON value")
    ttl_s: int = Field(
        default=keys.TOOL_CACHE_TTL_S, ge=1, le=keys.TOOL_CACHE_TTL_MAX_S, strict=True
    )


class CacheEntryPublic(BaseModel):
    tool: str
    input_hash: str
    value: Any
    expires_in: int
