"""Request bodies of the inference API. OpenAI fields we do not use are accepted and ignored.

Every body is an InputModel: any string in it holding a lone surrogate or a control character is
a 400 naming the field, here as at the gateway.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from hivemind_common.ids import NAME_PATTERN
from hivemind_common.text import InputModel, StopField
from hivemind_inference.logprobs import MAX_TOP_LOGPROBS


class ChatMessageIn(InputModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[dict[str, Any]] | None = None  # 5 there raised in the template step


class StreamOptions(InputModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


# llama.cpp reads this seed as "pick one at random" (and takes seeds modulo 2**32): a seeded
# request, which the gateway caches as deterministic, must never reach it
RANDOM_SEED = 0xFFFFFFFF
MAX_LOGIT_BIAS = 300  # OpenAI's bounds: entries, and each bias within +-100
_DEFAULTED = ("stream", "n", "temperature", "top_p", "presence_penalty", "frequency_penalty")


def usable_seed(seed: int) -> int:
    """``seed`` in [0, 2**32 - 1), the seeds llama.cpp keeps as given."""
    return seed % RANDOM_SEED


class SamplingFields(InputModel):
    """Sampling fields shared by chat and text completions."""

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_defaults(cls, data: Any) -> Any:
        """OpenAI's clients send ``null`` for a field the caller set to None: its default."""
        if isinstance(data, dict) and any(data.get(k, 0) is None for k in _DEFAULTED):
            return {k: v for k, v in data.items() if not (k in _DEFAULTED and v is None)}
        return data

    @field_validator("seed")
    @classmethod
    def _seed(cls, value: int | None) -> int | None:
        return None if value is None else usable_seed(value)

    model: str | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1, le=128)  # OpenAI's bound; the service's own cap is a setting
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    stop: StopField | None = None
    seed: int | None = None
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    logit_bias: (
        Annotated[
            dict[str, Annotated[float, Field(ge=-100, le=100)]],
            Field(max_length=MAX_LOGIT_BIAS),
        ]
        | None
    ) = None
    # llama.cpp extras, accepted under their usual names
    top_k: int | None = Field(default=None, ge=0)
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    repeat_penalty: float | None = Field(default=None, gt=0.0)


class ChatRequest(SamplingFields):
    messages: list[ChatMessageIn] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    # the answer continues the final assistant message (a prefill) instead of a new turn
    continue_final_message: bool = False


class CompletionRequest(SamplingFields):
    prompt: str | list[str] | list[int] = ""
    suffix: str | None = None
    echo: bool = False
    logprobs: int | None = Field(default=None, ge=0, le=5)
    max_tokens: int | None = Field(default=16, ge=1)


class TokenizeRequest(InputModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    content: str | None = None
    messages: list[ChatMessageIn] | None = None
    tools: list[dict[str, Any]] | None = None  # rendered with the messages, as a chat would
    add_special: bool = False


class DetokenizeRequest(InputModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    tokens: list[int]


class LoadRequest(InputModel):
    model_config = ConfigDict(extra="forbid")

    gguf: str = Field(min_length=1)
    lora: str | None = None
    version: str = Field(pattern=NAME_PATTERN)  # versions follow the one name rule
