"""Tool calls and structured output through the gateway, with the official openai client.

Behind the gateway: SmolLM2 (``default``, a template without tools) and tiny random models whose
templates speak the Hermes, Llama 3 and Mistral tool-call families (``tiny-<family>``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pytest
from inference.serving import gateway_with_llm
from inference.tiny_tools import shared_tools_inference_url

from support.gateway import RunningGateway

TRIP = {
    "type": "function",
    "function": {
        "name": "plan_trip",
        "description": "Plan a trip to a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "enum": ["Paris", "Rome", "Oslo"]},
                "days": {"type": "integer"},
            },
            "required": ["city", "days"],
        },
    },
}
CLOCK = {
    "type": "function",
    "function": {
        "name": "read_clock",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string", "enum": ["UTC", "CET"]}},
            "required": ["zone"],
        },
    },
}
ASK = [{"role": "user", "content": "Plan a trip to Rome for three days."}]
MODELS = ["tiny-hermes", "tiny-llama3", "tiny-mistral", "default"]


@pytest.fixture
def gw(redis_url: str, internal_token: str, data_dir: Path) -> Iterator[RunningGateway]:
    url = shared_tools_inference_url(internal_token)
    with gateway_with_llm(
        redis_url, internal_token, data_dir, inference_url=url, rag_enabled=False
    ) as running:
        yield running


@pytest.fixture
def client(gw: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=gw.key(role="read"), max_retries=0)


def _valid_call(name: str, arguments: str, tool: dict[str, Any]) -> None:
    assert name == tool["function"]["name"]
    jsonschema.validate(json.loads(arguments), tool["function"]["parameters"])


@pytest.mark.parametrize("model", MODELS)
def test_a_named_tool_choice_comes_back_as_a_valid_tool_call(
    client: openai.OpenAI, model: str
) -> None:
    done = client.chat.completions.create(
        model=model,
        messages=ASK,
        tools=[TRIP, CLOCK],
        tool_choice={"type": "function", "function": {"name": "plan_trip"}},
        max_tokens=60,
        temperature=0,
    )
    choice = done.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.id.startswith("call_")
    _valid_call(call.function.name, call.function.arguments, TRIP)


@pytest.mark.parametrize("model", MODELS)
def test_a_required_tool_call_streams_with_an_index_on_every_delta(
    client: openai.OpenAI, model: str
) -> None:
    stream = client.chat.completions.create(
        model=model,
        messages=ASK,
        tools=[TRIP],
        tool_choice="required",
        max_tokens=60,
        temperature=0,
        stream=True,
    )
    deltas = [d for chunk in stream for c in chunk.choices for d in c.delta.tool_calls or []]
    assert len(deltas) >= 2  # the head, then the arguments in pieces
    assert all(d.index == 0 for d in deltas)
    head, rest = deltas[0], deltas[1:]
    assert head.id and head.type == "function" and head.function.name == "plan_trip"
    assert all(d.id is None and d.function.name is None for d in rest)
    arguments = "".join(d.function.arguments or "" for d in deltas)
    _valid_call(head.function.name, arguments, TRIP)


def test_a_streamed_tool_call_ends_with_finish_reason_tool_calls(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="tiny-hermes",
        messages=ASK,
        tools=[TRIP],
        tool_choice="required",
        max_tokens=60,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    reasons = [c.finish_reason for chunk in chunks for c in chunk.choices if c.finish_reason]
    assert reasons == ["tool_calls"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


@pytest.mark.parametrize("model", ["tiny-hermes", "tiny-llama3", "tiny-mistral"])
def test_a_tool_result_turn_goes_back_through_the_template(
    client: openai.OpenAI, model: str
) -> None:
    first = client.chat.completions.create(
        model=model, messages=ASK, tools=[TRIP], tool_choice="required", max_tokens=60
    )
    call = (first.choices[0].message.tool_calls or [])[0]

    def answer(result: str) -> int:
        history: list[Any] = [
            *ASK,
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": result},
        ]
        done = client.chat.completions.create(
            model=model, messages=history, tools=[TRIP], max_tokens=4, temperature=0
        )
        assert done.choices[0].finish_reason in ("stop", "length", "tool_calls")
        assert done.usage is not None
        return done.usage.prompt_tokens

    # the result is in the prompt: a longer one makes a longer prompt
    assert answer('{"booked": "hotel Roma, via Appia 12, three nights"}') > answer('{"ok": 1}')


def test_tool_choice_none_sends_no_tools_to_the_template(client: openai.OpenAI) -> None:
    plain = client.chat.completions.create(model="tiny-hermes", messages=ASK, max_tokens=1)
    none = client.chat.completions.create(
        model="tiny-hermes", messages=ASK, tools=[TRIP], tool_choice="none", max_tokens=1
    )
    auto = client.chat.completions.create(
        model="tiny-hermes", messages=ASK, tools=[TRIP], max_tokens=1
    )
    assert plain.usage and none.usage and auto.usage
    assert none.usage.prompt_tokens == plain.usage.prompt_tokens
    assert auto.usage.prompt_tokens > plain.usage.prompt_tokens


def test_tools_on_a_template_that_cannot_render_them_are_a_clear_400(
    client: openai.OpenAI,
) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="default", messages=ASK, tools=[TRIP], max_tokens=8)
    assert err.value.code == "tools_not_supported"
    assert err.value.param == "tools"


def test_a_named_tool_that_is_not_among_the_tools_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model="tiny-hermes",
            messages=ASK,
            tools=[TRIP],
            tool_choice={"type": "function", "function": {"name": "launch"}},
        )
    assert err.value.param == "tool_choice"


PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer"},
        "role": {"type": "string", "enum": ["dev", "ops"]},
    },
    "required": ["name", "age", "role"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("model", ["default", "tiny-hermes"])
def test_json_schema_output_validates(client: openai.OpenAI, model: str) -> None:
    done = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Describe one engineer as JSON."}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "strict": True, "schema": PERSON},
        },
        max_tokens=80,
        temperature=0,
    )
    assert done.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(done.choices[0].message.content or ""), PERSON)


def test_json_object_output_is_a_json_object(client: openai.OpenAI) -> None:
    done = client.chat.completions.create(
        model="default",
        messages=[{"role": "user", "content": "Give a JSON object with a key 'color'."}],
        response_format={"type": "json_object"},
        max_tokens=60,
        temperature=0,
    )
    if done.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(done.choices[0].message.content or ""), dict)
    else:  # cut by max_tokens: still the start of an object
        assert (done.choices[0].message.content or "").lstrip().startswith("{")


def test_a_schema_feature_the_grammar_cannot_enforce_is_a_400_naming_it(
    client: openai.OpenAI,
) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 3}}}
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model="default",
            messages=[{"role": "user", "content": "A number"}],
            response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": schema}},
        )
    assert err.value.code == "unsupported_schema"
    assert "'minimum' at #/properties/n" in str(err.value.message)


def test_reasoning_comes_back_as_reasoning_content_whole_and_streamed(
    client: openai.OpenAI,
) -> None:
    # tiny-thinking's template opens <think>; the random model never closes it
    done = client.chat.completions.create(
        model="tiny-thinking", messages=ASK, max_tokens=6, temperature=0
    )
    message = done.choices[0].message
    assert (message.model_extra or {}).get("reasoning_content")
    assert message.content is None
    stream = client.chat.completions.create(
        model="tiny-thinking", messages=ASK, max_tokens=6, stream=True
    )
    pieces = [
        (c.delta.model_extra or {}).get("reasoning_content") for ch in stream for c in ch.choices
    ]
    assert any(pieces)


def test_reasoning_is_accepted_back_in_the_history_under_either_name(
    client: openai.OpenAI,
) -> None:
    def prompt_tokens(key: str | None) -> int:
        turn: dict[str, Any] = {"role": "assistant", "content": "Rome, three days."}
        if key:
            turn[key] = "The user wants Rome for three days."
        done = client.chat.completions.create(
            model="tiny-thinking", messages=[*ASK, turn, *ASK], max_tokens=1
        )
        assert done.usage is not None
        return done.usage.prompt_tokens

    # the template renders an earlier turn's reasoning: either name reaches it
    assert prompt_tokens("reasoning") == prompt_tokens("reasoning_content") > prompt_tokens(None)
