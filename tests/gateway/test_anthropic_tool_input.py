"""A tool call's arguments reach the official Anthropic client as a JSON object, streamed or
not, whatever the model wrote as arguments."""

from __future__ import annotations

import json
from typing import Any

import jiter
import pytest

from hivemind_gateway.anthropic.convert import message_from_events
from hivemind_gateway.anthropic.stream import message_events
from hivemind_gateway.openai.events import Event, Finished, TextDelta, ToolArgs, ToolStart


async def _sse(events: list[Event]) -> list[tuple[str, dict[str, Any]]]:
    async def source() -> Any:
        for event in events:
            yield event

    out: list[tuple[str, dict[str, Any]]] = []
    async for chunk in message_events(source(), model="m"):
        for frame in chunk.decode().strip().split("\n\n"):  # one chunk may hold two events
            head, data = frame.split("\n", 1)
            out.append((head.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return out


def _call(*pieces: str) -> list[Event]:
    return [
        TextDelta("let me look"),
        ToolStart(0, "toolu_1", "bash"),
        *(ToolArgs(0, p) for p in pieces),
        Finished("tool_calls", 5, 7),
    ]


@pytest.mark.parametrize(
    ("pieces", "expected"),
    [
        (['{"command": ', '"ls -la"}'], {"command": "ls -la"}),
        (["ls -la"], {"_raw": "ls -la"}),  # a model that wrote the command, not JSON
        (["[1, ", "2]"], {"_raw": "[1, 2]"}),
        (["42"], {"_raw": "42"}),
        (['{"command": "ls'], {"_raw": '{"command": "ls'}),  # cut off by max_tokens
        ([], {}),
    ],
)
async def test_tool_input_is_an_object_the_client_can_parse(
    pieces: list[str], expected: dict[str, Any]
) -> None:
    sse = await _sse(_call(*pieces))
    kinds = [k for k, _ in sse]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    tool_at = next(d["index"] for k, d in sse if k == "content_block_start"
                   and d["content_block"]["type"] == "tool_use")  # fmt: skip
    deltas = [d["delta"] for k, d in sse if k == "content_block_delta" and d["index"] == tool_at]
    assert [d["type"] for d in deltas] == ["input_json_delta"]
    # the official client parses the growing text as partial JSON after every delta (jiter)
    seen = ""
    for delta in deltas:
        seen += delta["partial_json"]
        jiter.from_json(seen.encode(), partial_mode=True)
    assert json.loads(seen) == expected
    stops = [d["index"] for k, d in sse if k == "content_block_stop"]
    assert stops == [0, 1]  # the text block, then the tool block after its arguments
    # the same call answered whole
    whole = message_from_events(_call(*pieces), model="m")
    assert whole["content"][1]["input"] == expected
