"""Request and response shapes of the learning API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hivemind_common.ids import Name
from hivemind_common.jobs import SourceLabel
from hivemind_common.text import ConversationInputModel, InputModel

MAX_MESSAGES = 64
MAX_CONTENT_CHARS = 32_000


class LearningMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=MAX_CONTENT_CHARS)


class SampleCreate(ConversationInputModel):
    """``POST /v1/learning/samples``: a chat plus an optional rating or corrected answer."""

    model_config = ConfigDict(extra="forbid")

    messages: list[LearningMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    rating: float | None = Field(default=None, ge=-1.0, le=1.0)
    correction: str | None = Field(default=None, max_length=MAX_CONTENT_CHARS)
    source: SourceLabel = Field(default="api", description="A short label, e.g. 'claude-code'.")

    @field_validator("messages")
    @classmethod
    def _has_user_turn(cls, value: list[LearningMessage]) -> list[LearningMessage]:
        if not any(m.role == "user" for m in value):
            raise ValueError("messages need at least one user turn")
        return value


class SampleAccepted(BaseModel):
    id: str


class TrainRequest(InputModel):
    """``POST /v1/learning/train``: optional model name and recipe overrides."""

    model_config = ConfigDict(extra="forbid")

    model: Name = "default"
    overrides: dict[str, str] = Field(default_factory=dict, max_length=32)


class TrainQueued(BaseModel):
    job_id: str


class JobPublic(BaseModel):
    job_id: str
    status: str
    stage: str
    version: str | None = None
    error: str | None = None
    model: str | None = None
    created_at: float | None = None
    updated_at: float | None = None
    stage_started: dict[str, float] | None = None  # when the job first reached each stage


class LearningStatus(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    samples: dict[str, Any]
    orchestrator: dict[str, Any]
    jobs: list[dict[str, Any]]
