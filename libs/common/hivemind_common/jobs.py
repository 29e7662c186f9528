"""Payloads that travel on Redis Streams between services, each with a ``schema_version``.

A consumer rejects (and acknowledges, with a log line) a payload whose major version it does not
know, rather than guessing.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hivemind_common.ids import LABEL_PATTERN

JobStatus = Literal["queued", "running", "succeeded", "failed", "rejected"]

# Where a sample came from: any short label a tool chooses ("capture", "api", "claude-code", ...)
SOURCE_PATTERN = LABEL_PATTERN
SourceLabel = Annotated[str, Field(pattern=SOURCE_PATTERN, max_length=32)]


class Payload(BaseModel):
    """Base of every queue payload: versioned, serialised as one JSON field ``data``."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = 1

    def to_fields(self) -> dict[str, str]:
        return {"data": self.model_dump_json()}

    @classmethod
    def from_fields(cls, fields: dict[Any, Any]) -> Any:
        raw = fields.get("data", fields.get(b"data"))
        if isinstance(raw, bytes):
            raw = raw.decode()
        return cls.model_validate(json.loads(raw or "{}"))


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: Any = None


class LearningSample(Payload):
    """One captured chat or submitted sample on the learning stream."""

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    tenant: str  # whose chat this is: its consent decides whether it trains the shared model
    source: SourceLabel = "api"
    messages: list[ChatMessage]
    rating: float | None = None
    correction: str | None = None
    model_version: str | None = None
    retrieved: list[str] = Field(default_factory=list)
    latency_ms: float | None = None
    created_at: float = Field(default_factory=time.time)


class TrainJob(Payload):
    """A request to run one learning cycle."""

    job_id: str = Field(default_factory=lambda: uuid.uuid4().hex[:16])
    model: str = "default"
    requested_by: str = "orchestrator"
    reason: str = "threshold"
    overrides: dict[str, str] = Field(default_factory=dict)
    created_at: float = Field(default_factory=time.time)


class ExportJob(Payload):
    """A request to export one trained version to GGUF."""

    job_id: str
    model: str
    version: str
    quant: str | None = None
    created_at: float = Field(default_factory=time.time)
