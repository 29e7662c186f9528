"""Parts of the wrong shape deep in a Messages or Responses body are a 400, never a 500."""

from __future__ import annotations

from typing import Any

import pytest

from hivemind_common.errors import Invalid
from hivemind_gateway.anthropic.convert import chat_payload as messages_payload
from hivemind_gateway.responses.convert import chat_payload as responses_payload


def _tool_result(content: Any) -> dict[str, Any]:
    block = {"type": "tool_result", "tool_use_id": "toolu_1", "content": content}
    return {"max_tokens": 8, "messages": [{"role": "user", "content": [block]}]}


@pytest.mark.parametrize("content", [["hi"], 5, {"type": "text", "text": "x"}])
def test_a_tool_result_of_the_wrong_shape_is_invalid(content: Any) -> None:
    with pytest.raises(Invalid):
        messages_payload(_tool_result(content), "default")


@pytest.mark.parametrize(
    "items",
    [
        [{"type": "message", "role": "user", "content": ["hi"]}],
        [{"type": "message", "role": "user", "content": 5}],
        [{"type": "function_call_output", "call_id": "c", "output": {"a": 1}}],
        ["just a string"],
    ],
)
def test_responses_input_items_of_the_wrong_shape_are_invalid(items: list[Any]) -> None:
    with pytest.raises(Invalid):
        responses_payload({"model": "default", "input": items})


def test_well_formed_bodies_still_convert() -> None:
    assert messages_payload(_tool_result("done"), "default")["messages"][0]["role"] == "tool"
    out = responses_payload({"model": "default", "input": [{"role": "user", "content": "hi"}]})
    assert out["messages"] == [{"role": "user", "content": "hi"}]


def test_a_final_assistant_message_is_sent_as_a_prefill_to_continue() -> None:
    body = {
        "max_tokens": 32,
        "messages": [
            {"role": "user", "content": "Give me JSON"},
            {"role": "assistant", "content": [{"type": "text", "text": "{"}]},
        ],
    }
    assert messages_payload(body, "default")["continue_final_message"] is True
    plain = {**body, "messages": body["messages"][:1]}
    assert "continue_final_message" not in messages_payload(plain, "default")
    tool_turn = {
        **body,
        "messages": [
            body["messages"][0],
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "t1", "name": "get", "input": {}}]},
        ],
    }  # fmt: skip
    assert "continue_final_message" not in messages_payload(tool_turn, "default")
