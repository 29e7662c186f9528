"""Request and response shapes of the API-key administration routes."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from hivemind_common.auth import MAX_KEY_RPM, ApiKeyPublic, Role
from hivemind_common.ids import TENANT_PATTERN
from hivemind_common.text import InputModel


class KeyCreate(InputModel):
    """``POST /v1/keys``: a new key for the caller's tenant (an operator may name another)."""

    model_config = ConfigDict(extra="forbid")

    role: Role = "write"
    name: str = Field(default="", max_length=100)
    rpm: int | None = Field(default=None, ge=1, le=MAX_KEY_RPM, strict=True)  # true is not 1
    tenant: Annotated[str, Field(pattern=TENANT_PATTERN)] | None = None


class KeyCreated(BaseModel):
    key: str = Field(description="The plaintext key; shown once, only its hash is stored.")
    key_id: str
    tenant: str
    role: Role


class KeysPublic(BaseModel):
    data: list[ApiKeyPublic]
    count: int
