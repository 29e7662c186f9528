"""Edges of the Anthropic and Responses converters: text that is not a string, and an answer
cut off by its token limit."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hivemind_common.errors import Invalid
from hivemind_gateway.anthropic.convert import chat_payload as anthropic_payload
from hivemind_gateway.openai.events import Event, Finished, TextDelta
from hivemind_gateway.responses.convert import chat_payload as responses_payload
from hivemind_gateway.responses.convert import response_from_events
from hivemind_gateway.responses.stream import response_events


@pytest.mark.parametrize("value", [None, 5, {"a": 1}, ["x"]])
def test_text_that_is_not_a_string_is_a_400_not_the_word_none(value: Any) -> None:
    """``str()`` of it reached the model: "None", "5", "{'a': 1}"."""
    block = {"type": "text", "text": value}
    bodies = [
        {"messages": [{"role": "user", "content": [block]}]},
        {"messages": [{"role": "user", "content": "hi"},
                      {"role": "assistant", "content": [block]}]},
        {"system": [block], "messages": [{"role": "user", "content": "hi"}]},
    ]  # fmt: skip
    for body in bodies:
        with pytest.raises(Invalid, match="text must be a string"):
            anthropic_payload(body, "m")
    part = {"type": "input_text", "text": value}
    with pytest.raises(Invalid, match="text must be a string"):
        responses_payload({"input": [{"role": "user", "content": [part]}]})
    thinking = {"type": "thinking", "thinking": value, "signature": ""}
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": [thinking]}]
    with pytest.raises(Invalid, match="thinking must be a string"):
        anthropic_payload({"messages": turns}, "m")
    ok = anthropic_payload({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "m")
    assert ok["messages"][-1]["content"] == ""  # an absent text is empty, as before


def _cut() -> list[Event]:
    return [TextDelta("a long ans"), TextDelta("wer that"), Finished("length", 3, 8)]


async def test_an_answer_cut_off_is_an_incomplete_item_whole_and_streamed() -> None:
    """The response said incomplete while its message item said completed (OpenAI marks the
    item incomplete too)."""
    whole = response_from_events({"model": "m"}, _cut())
    assert whole["status"] == "incomplete"
    assert whole["output"][0]["status"] == "incomplete"
    assert whole["output"][0]["content"][0]["text"] == "a long answer that"

    async def source() -> Any:
        for event in _cut():
            yield event

    frames = []
    async for chunk in response_events(source(), {"model": "m"}):
        for frame in chunk.decode().strip().split("\n\n"):
            frames.append(json.loads(frame.split("data: ", 1)[1]))
    done = [f for f in frames if f["type"] == "response.output_item.done"]
    assert [f["item"]["status"] for f in done] == ["incomplete"]
    assert frames[-1]["type"] == "response.incomplete"
    assert frames[-1]["response"]["output"][0]["status"] == "incomplete"
    assert frames[-1]["response"]["output"][0]["content"][0]["text"] == "a long answer that"
    fine = response_from_events({"model": "m"}, [TextDelta("ok"), Finished("stop", 1, 1)])
    assert fine["status"] == "completed" and fine["output"][0]["status"] == "completed"
