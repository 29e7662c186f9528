"""Shapes of the models surface: versions listed, promote and rollback answers."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hivemind_common.ids import NAME_PATTERN
from hivemind_common.model_registry import VersionStatus
from hivemind_common.text import InputModel


class ModelVersionPublic(BaseModel):
    name: str
    version: str
    status: VersionStatus
    created_at: float
    metrics: dict[str, Any] = Field(default_factory=dict)


class ModelVersionsPublic(BaseModel):
    data: list[ModelVersionPublic]
    count: int


class PromoteRequest(InputModel):
    model_config = ConfigDict(extra="forbid")

    version: str = Field(pattern=NAME_PATTERN, description="A registered version to serve.")


class DeployPublic(BaseModel):
    name: str
    version: str
    previous_version: str | None
    swap_ms: float | None
    already_serving: bool = False
