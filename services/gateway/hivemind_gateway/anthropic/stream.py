"""The pipeline's events as Anthropic's streaming event sequence.

``message_start``, ``ping``, then for each content block ``content_block_start``, its
``content_block_delta`` s (``text_delta``, ``thinking_delta``, ``input_json_delta``) and
``content_block_stop``; then ``message_delta`` (stop reason, usage) and ``message_stop``. A
failure mid-stream is an ``error`` event in Anthropic's envelope.

A tool call's arguments are gathered and sent as one ``input_json_delta`` when its block
closes, always a JSON object (``convert.tool_input``): the official client parses the deltas as
JSON as they come, and a model that wrote plain text as arguments broke its stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from hivemind_common.error_handlers import anthropic_error_body
from hivemind_gateway.anthropic.convert import new_message_id, stop_fields, tool_input
from hivemind_gateway.openai.events import (
    Event,
    Failed,
    Finished,
    ReasoningDelta,
    TextDelta,
    ToolArgs,
    ToolStart,
)


def sse_event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **data}) + b"\n\n"


async def message_events(events: AsyncIterator[Event], *, model: str) -> AsyncIterator[bytes]:
    """Anthropic's SSE events for one streamed answer."""
    start: dict[str, Any] = {
        "id": new_message_id(),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 0, "output_tokens": 0},
    }
    yield sse_event("message_start", {"message": start})
    yield sse_event("ping", {})
    index = -1
    open_kind: str | None = None  # text | thinking | tool:<n>
    arguments: list[str] = []  # the open tool block's, sent whole as it closes

    def close() -> bytes:
        head = b""
        if open_kind is not None and open_kind.startswith("tool:"):
            whole = orjson.dumps(tool_input("".join(arguments))).decode()
            arguments.clear()
            delta = {"type": "input_json_delta", "partial_json": whole}
            head = sse_event("content_block_delta", {"index": index, "delta": delta})
        return head + sse_event("content_block_stop", {"index": index})

    async for event in events:
        if isinstance(event, Failed):
            if open_kind is not None:
                yield close()
            body = anthropic_error_body(event.status, event.message)
            yield sse_event("error", {"error": body["error"]})
            return
        if isinstance(event, Finished):
            if open_kind is not None:
                yield close()
            delta = stop_fields(event)
            usage = {"input_tokens": event.prompt_tokens, "output_tokens": event.completion_tokens}
            yield sse_event("message_delta", {"delta": delta, "usage": usage})
            yield sse_event("message_stop", {})
            return
        kind, block, delta_body = _parts(event)
        if kind != open_kind and block is not None:
            if open_kind is not None:
                yield close()
            index += 1
            open_kind = kind
            yield sse_event("content_block_start", {"index": index, "content_block": block})
        elif kind != open_kind:
            continue  # arguments of a call that was never started
        if isinstance(event, ToolArgs):
            arguments.append(event.piece)
        elif delta_body is not None:
            yield sse_event("content_block_delta", {"index": index, "delta": delta_body})


def _parts(event: Event) -> tuple[str, dict[str, Any] | None, dict[str, Any] | None]:
    """(block kind, the block that starts it or None, the delta) for one event."""
    if isinstance(event, TextDelta):
        return "text", {"type": "text", "text": ""}, {"type": "text_delta", "text": event.text}
    if isinstance(event, ReasoningDelta):
        block: dict[str, Any] = {"type": "thinking", "thinking": "", "signature": ""}
        return "thinking", block, {"type": "thinking_delta", "thinking": event.text}
    if isinstance(event, ToolStart):
        tool: dict[str, Any] = {"type": "tool_use", "id": event.id, "name": event.name}
        tool["input"] = {}
        return f"tool:{event.index}", tool, None
    assert isinstance(event, ToolArgs)
    return f"tool:{event.index}", None, {"type": "input_json_delta", "partial_json": event.piece}
