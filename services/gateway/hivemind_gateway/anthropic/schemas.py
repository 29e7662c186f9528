"""Bodies of the Anthropic Messages routes: validated enough to answer 400, the rest converted."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator

from hivemind_common.text import (
    MAX_CHAT_MESSAGES,
    ConversationInputModel,
    InputModel,
    StopList,
)
from hivemind_gateway.openai.schemas import HivemindOptions, check_message_length


class MessageIn(InputModel):
    model_config = ConfigDict(extra="allow")

    # Claude Code also sends "system" turns between user turns (agent listings, reminders)
    role: Literal["user", "assistant", "system"]
    content: str | list[dict[str, Any]]

    _content_length = field_validator("content")(check_message_length)


class CountTokensBody(ConversationInputModel):
    """Every string in it (passed-through fields too) is checked as text; control characters in
    the messages and system prompt are cleaned (see ConversationInputModel)."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=128)
    messages: list[MessageIn] = Field(min_length=1, max_length=MAX_CHAT_MESSAGES)
    system: str | list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    hivemind: HivemindOptions | None = None


class MessagesBody(CountTokensBody):
    max_tokens: int = Field(ge=1)
    stream: bool = False
    temperature: float | None = Field(default=None, ge=0.0, le=1.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0)
    stop_sequences: StopList | None = None
    metadata: dict[str, Any] | None = None
