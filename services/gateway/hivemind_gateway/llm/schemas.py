"""Bodies of the LLM helper routes (thin templates over chat)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from hivemind_common.ids import Identifier
from hivemind_common.text import InputModel

Mode = Literal["chat", "concise", "detailed", "creative", "json"]
Task = Literal["explain", "review", "fix", "refactor", "document", "test", "complete"]


class HelperOptions(InputModel):
    """Fields every helper accepts besides its own."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(default="auto", min_length=1, max_length=128)
    max_tokens: int = Field(default=256, ge=1, le=8192)
    temperature: float = Field(default=0.2, ge=0.0, le=2.0)
    rag: bool = True
    session_id: Identifier | None = None


class GenerateRequest(HelperOptions):
    prompt: str = Field(min_length=1, max_length=200_000)
    mode: Mode = "chat"


class CodeAssistRequest(HelperOptions):
    code: str = Field(min_length=1, max_length=200_000)
    task: Task | str = Field(default="explain", min_length=1, max_length=500)
    language: str = Field(default="", max_length=40)


class CompleteRequest(HelperOptions):
    prefix: str = Field(max_length=200_000)
    suffix: str = Field(default="", max_length=200_000)
    language: str = Field(default="", max_length=40)
    max_tokens: int = Field(default=64, ge=1, le=2048)


class HelperPublic(BaseModel):
    text: str
    model: str
    version: str | None
    finish_reason: str | None
    method: str = "chat"
    usage: dict[str, int] | None = None
