"""Bodies of the gateway's OpenAI routes: validated enough to answer 400, otherwise passed on.

Every OpenAI field we do not name is kept (``extra="allow"``) and forwarded unchanged; only the
``hivemind`` object is ours, and it is stripped before the body goes to inference.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator

from hivemind_common.ids import Identifier
from hivemind_common.text import (
    MAX_CHAT_MESSAGES,
    MAX_MESSAGE_CHARS,
    ConversationInputModel,
    InputModel,
    StopField,
)
from hivemind_gateway.docs.schemas import Collection

MAX_CHOICES = 128  # OpenAI's bound; inference has its own, lower cap (a setting)
MAX_EMBEDDING_INPUTS = 2048  # OpenAI's bound


def check_message_length(value: str | list[dict[str, Any]] | None) -> Any:
    """A message's text (a string, or the text of its parts) is at most MAX_MESSAGE_CHARS."""
    if isinstance(value, str):
        size = len(value)
    elif isinstance(value, list):
        size = sum(len(p["text"]) for p in value if isinstance(p.get("text"), str))
    else:
        return value
    if size > MAX_MESSAGE_CHARS:
        raise ValueError(f"has {size} characters; a message may have {MAX_MESSAGE_CHARS}")
    return value


_PROMPTS = Field(max_length=MAX_CHOICES)
_INPUTS = Field(max_length=MAX_EMBEDDING_INPUTS)


class HivemindOptions(InputModel):
    """``hivemind: {rag, session_id, capture, task, collections, skip_collections}`` steering
    retrieval (which reference library collections to draw from or leave out), capture and
    routing."""

    model_config = ConfigDict(extra="forbid")

    rag: bool | None = None
    session_id: Identifier | None = None
    capture: bool | None = None
    task: str | None = Field(default=None, max_length=64)
    collections: list[Collection] | None = Field(default=None, max_length=64)
    skip_collections: list[Collection] | None = Field(default=None, max_length=64)


class ChatMessage(InputModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[dict[str, Any]] | None = None  # a number there was inference's 500

    _content_length = field_validator("content")(check_message_length)


class StreamOptions(InputModel):
    """``stream_options``: an object (a string or a list there once raised on ``.get``)."""

    model_config = ConfigDict(extra="allow")

    include_usage: bool | None = None


class ChatBody(ConversationInputModel):
    """Every string in it (passed-through fields too) is checked as text; control characters in
    the messages are cleaned (see ConversationInputModel)."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=128)
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_CHAT_MESSAGES)
    stream: bool | None = False  # null: OpenAI's clients send it for a caller's None
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    seed: int | None = None
    n: int | None = Field(default=None, ge=1, le=MAX_CHOICES)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: StopField | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    hivemind: HivemindOptions | None = None

    @field_validator("top_logprobs")
    @classmethod
    def _top_needs_logprobs(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and not info.data.get("logprobs"):
            raise ValueError("top_logprobs needs logprobs set to true")
        return value


class CompletionBody(InputModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=128)
    prompt: (
        Annotated[str, Field(max_length=MAX_MESSAGE_CHARS)]
        | Annotated[list[Annotated[str, Field(max_length=MAX_MESSAGE_CHARS)]], _PROMPTS]
        | Annotated[list[int], Field(max_length=MAX_MESSAGE_CHARS)]
    )
    suffix: str | None = Field(default=None, max_length=MAX_MESSAGE_CHARS)
    stream: bool | None = False  # null: OpenAI's clients send it for a caller's None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    seed: int | None = None
    n: int | None = Field(default=None, ge=1, le=MAX_CHOICES)
    max_tokens: int | None = Field(default=None, ge=1)
    stop: StopField | None = None
    logprobs: int | None = Field(default=None, ge=0, le=5)
    hivemind: HivemindOptions | None = None

    @field_validator("prompt", mode="before")
    @classmethod
    def _one_shape(cls, value: Any) -> Any:
        """A list is prompts (strings) or one prompt's token ids (integers), decided by its first
        item: each union branch reported every item of a list of another shape, and a body of a
        million of them made millions of errors (seconds of the event loop, GiBs)."""
        if isinstance(value, list) and value and isinstance(value[0], int):
            if len(value) > MAX_MESSAGE_CHARS or not all(type(x) is int for x in value):
                raise ValueError("a token-id prompt holds only integers (at most 1,000,000)")
        elif isinstance(value, list) and len(value) > MAX_CHOICES:
            raise ValueError(f"at most {MAX_CHOICES} prompts in one request")
        return value


class EmbeddingBody(InputModel):
    model_config = ConfigDict(extra="allow")

    input: (
        Annotated[str, Field(max_length=MAX_MESSAGE_CHARS)]
        | Annotated[list[Annotated[str, Field(max_length=MAX_MESSAGE_CHARS)]], _INPUTS]
        | Annotated[list[int], Field(max_length=MAX_MESSAGE_CHARS)]
        | Annotated[list[list[int]], _INPUTS]
    )
    model: str | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _token_ids_unread(cls, value: Any) -> Any:
        """Token ids are refused by the route (a 400) whatever they hold, so they are not read
        item by item: a body of millions of odd items made an error of each (seconds, GiBs)."""
        if isinstance(value, list) and len(value) > MAX_EMBEDDING_INPUTS:
            raise ValueError(f"at most {MAX_EMBEDDING_INPUTS} inputs in one request")
        if isinstance(value, list) and value and not isinstance(value[0], str):
            return [0]
        return value
