"""The chat pipeline's internal events, read from chat completion chunks.

The pipeline streams chat completion chunks; the Anthropic Messages and OpenAI Responses
adapters do not speak chunks, they speak "a text block started, a tool call started, here is
a piece of its arguments, the answer ended". :func:`chat_events` turns chunks into those
events once, and :func:`answer_events` does the same for a whole answer, so each adapter has
one mapping from events to its own wire format, streamed or not.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass
class TextDelta:
    text: str


@dataclass
class ReasoningDelta:
    text: str


@dataclass
class ToolStart:
    index: int
    id: str
    name: str


@dataclass
class ToolArgs:
    index: int
    piece: str


@dataclass
class Finished:
    reason: str | None  # the chat finish_reason: stop, length, tool_calls
    prompt_tokens: int = 0
    completion_tokens: int = 0
    stop_sequence: str | None = None  # the caller's stop string that ended it (inference's)


@dataclass
class Failed:
    status: int
    message: str
    code: str | None = None


Event = TextDelta | ReasoningDelta | ToolStart | ToolArgs | Finished | Failed


def with_stream_and_options(body: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    """A wire adapter's chat payload, finished: streaming (with the usage chunk the adapters
    need for their own usage events) and the ``hivemind`` options carried over from ``body``."""
    if body.get("stream"):
        payload["stream"] = True
        payload["stream_options"] = {"include_usage": True}
    if body.get("hivemind"):
        payload["hivemind"] = body["hivemind"]
    return payload


def _delta_events(delta: dict[str, Any]) -> Iterator[Event]:
    if delta.get("reasoning_content"):
        yield ReasoningDelta(delta["reasoning_content"])
    if delta.get("content"):
        yield TextDelta(delta["content"])
    for call in delta.get("tool_calls") or []:
        fn = call.get("function") or {}
        index = int(call.get("index", 0))
        if call.get("id"):
            yield ToolStart(index, call["id"], fn.get("name") or "")
        if fn.get("arguments"):
            yield ToolArgs(index, fn["arguments"])


async def chat_events(payloads: AsyncIterator[bytes]) -> AsyncIterator[Event]:
    """Events of a streamed chat (choice 0); ``Finished`` comes last, with the usage."""
    reason: str | None = None
    stop: str | None = None
    usage: dict[str, Any] = {}
    async for data in payloads:
        chunk = orjson.loads(data)
        if "error" in chunk:
            err = chunk["error"] or {}
            status = 400 if err.get("type") == "invalid_request_error" else 502
            yield Failed(status, str(err.get("message") or "the stream failed"), err.get("code"))
            return
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            for event in _delta_events(choice.get("delta") or {}):
                yield event
            reason = choice.get("finish_reason") or reason
            stop = _stop_of(choice) or stop
    yield Finished(reason, usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0), stop)


def _stop_of(choice: dict[str, Any]) -> str | None:
    found = choice.get("stop_reason")
    return found if isinstance(found, str) and found else None


def answer_events(answer: dict[str, Any]) -> list[Event]:
    """The same events for a whole chat completion."""
    choice = (answer.get("choices") or [{}])[0]
    message = dict(choice.get("message") or {})
    calls = message.pop("tool_calls", None) or []
    events = list(_delta_events(message))
    for i, call in enumerate(calls):
        events += _delta_events({"tool_calls": [{**call, "index": i}]})
    usage = answer.get("usage") or {}
    events.append(
        Finished(
            choice.get("finish_reason"),
            usage.get("prompt_tokens", 0),
            usage.get("completion_tokens", 0),
            _stop_of(choice),
        )
    )
    return events
