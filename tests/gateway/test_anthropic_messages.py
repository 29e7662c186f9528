"""Anthropic's Messages API on the gateway, with the official anthropic client.

Behind the gateway: SmolLM2 (``default``; ``claude-*`` names map to the ``auto`` route, which
serves it) and tiny random models with tool-aware templates (``tiny-<family>``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import jsonschema
import pytest
from inference.serving import gateway_with_llm
from inference.tiny_tools import shared_tools_inference_url

from support.gateway import RunningGateway
from support.waiting import wait_until

TRIP_TOOL = {
    "name": "plan_trip",
    "description": "Plan a trip to a city",
    "input_schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "enum": ["Paris", "Rome", "Oslo"]},
            "days": {"type": "integer"},
        },
        "required": ["city", "days"],
    },
}
HELLO = [{"role": "user", "content": "Say hello."}]


@pytest.fixture
def gw(redis_url: str, internal_token: str, data_dir: Path) -> Iterator[RunningGateway]:
    url = shared_tools_inference_url(internal_token)
    with gateway_with_llm(redis_url, internal_token, data_dir, inference_url=url) as running:
        yield running


@pytest.fixture
def claude(gw: RunningGateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=gw.key(role="read"), max_retries=0)


def test_a_claude_model_name_answers_text_from_the_local_model(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=8,
        system="Be brief.",
        messages=HELLO,
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.model == "claude-sonnet-4-5"
    assert message.content[0].type == "text" and message.content[0].text
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0


def test_a_stream_sends_every_event_type_in_order(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(model="claude-haiku-4-5", max_tokens=8, messages=HELLO) as stream:
        events = list(stream)
        final = stream.get_final_message()
    kinds = [e.type for e in events if e.type not in ("text",)]
    assert kinds[0] == "message_start"
    assert kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds.index("content_block_start") < kinds.index("content_block_delta")
    assert kinds.index("content_block_delta") < kinds.index("content_block_stop")
    deltas = [e for e in events if e.type == "content_block_delta"]
    assert all(d.delta.type == "text_delta" for d in deltas)
    assert final.content[0].type == "text"
    assert final.content[0].text == "".join(d.delta.text for d in deltas)  # type: ignore[union-attr]
    assert final.usage.output_tokens > 0


def test_the_raw_stream_has_a_ping_and_named_events(gw: RunningGateway) -> None:
    body = {"model": "claude-x", "max_tokens": 4, "messages": HELLO, "stream": True}
    headers = {"x-api-key": gw.key(role="read"), "anthropic-version": "2023-06-01"}
    with httpx.Client(base_url=gw.url, timeout=60) as c:
        r = c.post("/v1/messages", json=body, headers=headers)
    names = [line[7:] for line in r.text.splitlines() if line.startswith("event: ")]
    assert names[:2] == ["message_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]


def test_a_stop_sequence_that_ends_the_answer_is_named(claude: anthropic.Anthropic) -> None:
    """stop_reason was always end_turn and stop_sequence null, so a client could not tell
    which of its stop sequences fired."""
    sea = [{"role": "user", "content": "Write a short sentence about the sea."}]
    ask = {"model": "claude-haiku-4-5", "max_tokens": 24, "messages": sea,
           "extra_body": {"temperature": 0.0}}  # fmt: skip
    whole = claude.messages.create(**ask)  # type: ignore[arg-type]
    text = whole.content[0].text  # type: ignore[union-attr]
    words = [w for w in text.split() if len(w) >= 4]
    assert words, text
    word = words[len(words) // 2]
    cut = claude.messages.create(**ask, stop_sequences=["@@never@@", word])  # type: ignore[arg-type]
    assert cut.stop_reason == "stop_sequence" and cut.stop_sequence == word
    assert word not in cut.content[0].text  # type: ignore[union-attr]
    with claude.messages.stream(**ask, stop_sequences=[word]) as stream:  # type: ignore[arg-type]
        final = stream.get_final_message()
    assert final.stop_reason == "stop_sequence" and final.stop_sequence == word
    plain = claude.messages.create(**ask, stop_sequences=["@@never@@"])  # type: ignore[arg-type]
    assert plain.stop_reason in ("end_turn", "max_tokens") and plain.stop_sequence is None


def test_a_forced_tool_choice_comes_back_as_tool_use(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(
        model="tiny-hermes",
        max_tokens=60,
        messages=[{"role": "user", "content": "Plan a trip to Oslo for two days."}],
        tools=[TRIP_TOOL],  # type: ignore[list-item]
        tool_choice={"type": "tool", "name": "plan_trip"},
    )
    assert message.stop_reason == "tool_use"
    (block,) = [b for b in message.content if b.type == "tool_use"]
    assert block.name == "plan_trip"
    jsonschema.validate(block.input, TRIP_TOOL["input_schema"])


def test_a_streamed_tool_use_sends_input_json_deltas(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(
        model="tiny-llama3",
        max_tokens=60,
        messages=[{"role": "user", "content": "Plan a trip."}],
        tools=[TRIP_TOOL],  # type: ignore[list-item]
        tool_choice={"type": "any"},
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    starts = [e for e in events if e.type == "content_block_start"]
    assert starts[0].content_block.type == "tool_use"
    deltas = [e.delta for e in events if e.type == "content_block_delta"]
    assert deltas and all(d.type == "input_json_delta" for d in deltas)
    tool_use = final.content[0]
    assert tool_use.type == "tool_use"
    jsonschema.validate(tool_use.input, TRIP_TOOL["input_schema"])
    assert final.stop_reason == "tool_use"


def test_a_tool_result_turn_is_answered(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(
        model="tiny-mistral",
        max_tokens=4,
        tools=[TRIP_TOOL],  # type: ignore[list-item]
        messages=[
            {"role": "user", "content": "Plan a trip to Rome."},
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "plan_trip",
                        "input": {"city": "Rome", "days": 2},
                    }
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "booked"}],
            },
        ],
    )
    assert message.stop_reason in ("end_turn", "max_tokens", "tool_use")


def test_count_tokens_counts_the_prompt_and_its_tools(claude: anthropic.Anthropic) -> None:
    plain = claude.messages.count_tokens(model="tiny-hermes", messages=HELLO)
    with_tools = claude.messages.count_tokens(
        model="tiny-hermes",
        messages=HELLO,
        tools=[TRIP_TOOL],  # type: ignore[list-item]
    )
    assert plain.input_tokens > 0
    assert with_tools.input_tokens > plain.input_tokens


def test_a_bearer_token_works_as_well_as_x_api_key(gw: RunningGateway) -> None:
    bearer = anthropic.Anthropic(base_url=gw.url, auth_token=gw.key(role="read"), max_retries=0)
    message = bearer.messages.create(model="claude-x", max_tokens=2, messages=HELLO)
    assert message.content


def test_a_missing_or_wrong_key_is_an_anthropic_authentication_error(gw: RunningGateway) -> None:
    wrong = anthropic.Anthropic(base_url=gw.url, api_key="hm_nope", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as err:
        wrong.messages.create(model="claude-x", max_tokens=2, messages=HELLO)
    assert err.value.status_code == 401
    assert err.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    with httpx.Client(base_url=gw.url, timeout=30) as c:
        r = c.post("/v1/messages", json={"model": "x", "max_tokens": 2, "messages": HELLO})
    assert r.status_code == 401 and r.json()["type"] == "error"


def test_a_bad_request_is_an_anthropic_invalid_request_error(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as err:
        claude.messages.create(model="claude-x", max_tokens=0, messages=HELLO)
    body = err.value.body
    assert body["type"] == "error"  # type: ignore[index]
    assert body["error"]["type"] == "invalid_request_error"  # type: ignore[index]


def test_a_prompt_over_the_context_is_a_clear_invalid_request_error(
    claude: anthropic.Anthropic,
) -> None:
    long = "word " * 3000  # more than the 1024-token context of these models
    # as an agent sends it: with tools, which SmolLM2's template cannot render; the overflow
    # is the error reported, in the words agents recognise
    with pytest.raises(anthropic.BadRequestError) as err:
        claude.messages.create(
            model="claude-x",
            max_tokens=8,
            messages=[{"role": "user", "content": long}],
            tools=[TRIP_TOOL],  # type: ignore[list-item]
        )
    error = err.value.body["error"]  # type: ignore[index]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("prompt is too long")


def test_retrieval_is_injected_into_the_system_prompt(gw: RunningGateway) -> None:
    fact = "The deploy target of project atlas is the staging cluster named kestrel."
    with gw.client(role="write") as c:
        c.put("/v1/facts/atlas-deploy", json={"value": fact}).raise_for_status()

        def indexed() -> bool:
            hit = c.post("/v1/rag/context", json={"query": "deploy target of project atlas"})
            return "kestrel" in hit.json().get("text", "")

        wait_until(indexed, timeout=30, what="the fact to be searchable")
    claude = anthropic.Anthropic(base_url=gw.url, api_key=gw.key(role="read"), max_retries=0)
    ask = [{"role": "user", "content": "What is the deploy target of atlas?"}]
    plain = claude.messages.create(
        model="claude-x", max_tokens=2, messages=ask, extra_body={"hivemind": {"rag": False}}
    )
    injected = claude.messages.with_raw_response.create(
        model="claude-x", max_tokens=2, messages=ask
    )
    assert int(injected.headers["x-hivemind-rag-items"]) >= 1
    assert injected.parse().usage.input_tokens > plain.usage.input_tokens + 10
    # Claude Code asks for 32000 tokens, more than the model's window: retrieval still comes
    agent_sized = httpx.post(
        f"{gw.url}/v1/messages",
        headers={"x-api-key": gw.key(role="read"), "anthropic-version": "2023-06-01"},
        json={"model": "claude-x", "max_tokens": 32000, "messages": ask, "stop_sequences": ["."]},
        timeout=120,
    )
    assert agent_sized.status_code == 200, agent_sized.text
    assert int(agent_sized.headers["x-hivemind-rag-items"]) >= 1


def test_a_token_count_counts_what_retrieval_would_inject(gw: RunningGateway) -> None:
    """It counted only the caller's messages, so a client budgeting with it overran; and it
    is not a retrieval anyone asked for, so it logs none."""
    fact = "The deploy target of project atlas is the staging cluster named kestrel."
    ask = [{"role": "user", "content": "What is the deploy target of atlas?"}]
    with gw.client(role="write") as c:
        c.put("/v1/facts/atlas-deploy", json={"value": fact}).raise_for_status()

        def indexed() -> bool:  # /v1/rag/context logs before it answers: nothing pending
            hit = c.post("/v1/rag/context", json={"query": "deploy target of project atlas"})
            return "kestrel" in hit.json().get("text", "")

        wait_until(indexed, timeout=30, what="the fact to be searchable")
        before = c.get("/v1/rag/stats").json()
    claude = anthropic.Anthropic(base_url=gw.url, api_key=gw.key(role="read"), max_retries=0)
    off = {"hivemind": {"rag": False}}
    counted = claude.messages.count_tokens(model="claude-x", messages=ask)
    counted_plain = claude.messages.count_tokens(model="claude-x", messages=ask, extra_body=off)
    with gw.client() as c:
        after = c.get("/v1/rag/stats").json()
    assert (after["counters"], after["logged"]) == (before["counters"], before["logged"])
    plain = claude.messages.create(model="claude-x", max_tokens=2, messages=ask, extra_body=off)
    injected = claude.messages.create(model="claude-x", max_tokens=2, messages=ask)
    assert counted_plain.input_tokens == plain.usage.input_tokens
    assert counted.input_tokens == injected.usage.input_tokens > plain.usage.input_tokens + 10


def test_system_turns_between_user_turns_are_accepted(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(
        model="claude-x",
        max_tokens=2,
        messages=[
            {"role": "user", "content": "hi"},
            {"role": "system", "content": "Agents available: none."},  # type: ignore[list-item]
            {"role": "user", "content": "Say hello."},
        ],
    )
    assert message.content


def test_reasoning_comes_back_as_thinking_blocks(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(model="tiny-thinking", max_tokens=6, messages=HELLO)
    assert message.content[0].type == "thinking"
    with claude.messages.stream(model="tiny-thinking", max_tokens=6, messages=HELLO) as stream:
        deltas = [e.delta.type for e in stream if e.type == "content_block_delta"]
    assert deltas and set(deltas) == {"thinking_delta"}
