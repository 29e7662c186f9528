"""The pipeline's events as the Responses API's streaming events.

``response.created``, ``response.in_progress``; per output item ``response.output_item.added``,
for a message ``response.content_part.added``, ``response.output_text.delta`` s,
``response.output_text.done``, ``response.content_part.done``; for a function call
``response.function_call_arguments.delta`` s and ``.done``; then ``response.output_item.done``;
finally ``response.completed`` (or ``response.incomplete``) with the whole response, or
``error`` and ``response.failed``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from hivemind_gateway.openai.events import Event, Failed, Finished, TextDelta, ToolArgs, ToolStart
from hivemind_gateway.responses.convert import (
    call_item,
    finish_shell,
    message_item,
    new_id,
    response_shell,
)


@dataclass
class _Writer:
    seq: int = 0
    output: list[dict[str, Any]] = field(default_factory=list)

    def event(self, kind: str, **data: Any) -> bytes:
        body = {"type": kind, "sequence_number": self.seq, **data}
        self.seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(body) + b"\n\n"


async def response_events(
    events: AsyncIterator[Event], body: dict[str, Any]
) -> AsyncIterator[bytes]:
    """The Responses API's SSE events for one streamed answer."""
    w = _Writer()
    shell = response_shell(body, new_id("resp"), "in_progress")
    yield w.event("response.created", response=shell)
    yield w.event("response.in_progress", response=shell)
    item: dict[str, Any] | None = None  # the output item being written
    async for event in events:
        if isinstance(event, TextDelta):
            if item is None or item["type"] != "message":
                for out in _close(w, item):
                    yield out
                item = message_item("", status="in_progress")
                item["_text"] = ""
                for out in _open_message(w, item):
                    yield out
            item["_text"] += event.text
            yield w.event(
                "response.output_text.delta",
                item_id=item["id"],
                output_index=len(w.output),
                content_index=0,
                delta=event.text,
                logprobs=[],
            )
        elif isinstance(event, ToolStart):
            for out in _close(w, item):
                yield out
            item = call_item(event.id, event.name, "", status="in_progress")
            yield w.event("response.output_item.added", output_index=len(w.output), item=item)
        elif isinstance(event, ToolArgs) and item is not None and item["type"] == "function_call":
            item["arguments"] += event.piece
            yield w.event(
                "response.function_call_arguments.delta",
                item_id=item["id"],
                output_index=len(w.output),
                delta=event.piece,
            )
        elif isinstance(event, Failed):
            error = {"code": event.code or "server_error", "message": event.message}
            yield w.event("error", code=error["code"], message=event.message, param=None)
            failed = {**shell, "status": "failed", "error": error, "output": w.output}
            yield w.event("response.failed", response=failed)
            return
        elif isinstance(event, Finished):
            # cut off (max_output_tokens): the item being written ends incomplete, as OpenAI's
            for out in _close(w, item, "incomplete" if event.reason == "length" else "completed"):
                yield out
            done = {**finish_shell(shell, event), "output": w.output}
            kind = "response.incomplete" if done["status"] == "incomplete" else "response.completed"
            yield w.event(kind, response=done)
            return


def _open_message(w: _Writer, item: dict[str, Any]) -> list[bytes]:
    public = {k: v for k, v in item.items() if not k.startswith("_")}
    part = {"type": "output_text", "text": "", "annotations": []}
    return [
        w.event("response.output_item.added", output_index=len(w.output), item=public),
        w.event(
            "response.content_part.added",
            item_id=item["id"],
            output_index=len(w.output),
            content_index=0,
            part=part,
        ),
    ]


def _close(w: _Writer, item: dict[str, Any] | None, status: str = "completed") -> list[bytes]:
    """The events that end an output item; the item joins the response's output."""
    if item is None:
        return []
    index = len(w.output)
    out: list[bytes] = []
    if item["type"] == "message":
        text = item.pop("_text")
        part = {"type": "output_text", "text": text, "annotations": []}
        ids = {"item_id": item["id"], "output_index": index, "content_index": 0}
        out.append(w.event("response.output_text.done", text=text, logprobs=[], **ids))
        out.append(w.event("response.content_part.done", part=part, **ids))
        item.update(status=status, content=[part])
    else:
        item["status"] = status
        out.append(
            w.event(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=index,
                arguments=item["arguments"],
            )
        )
    out.append(w.event("response.output_item.done", output_index=index, item=item))
    w.output.append(item)
    return out
