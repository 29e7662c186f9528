"""OpenAI's Responses API (stateless) and embeddings details, with the official openai client."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import numpy as np
import openai
import pytest
from inference.serving import gateway_with_llm
from inference.tiny_tools import shared_tools_inference_url

from support.gateway import RunningGateway

TRIP = {
    "type": "function",
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
}


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


def test_a_response_answers_text(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model="default", instructions="Be brief.", input="Say hello.", max_output_tokens=8
    )
    assert response.object == "response"
    assert response.status in ("completed", "incomplete")
    assert response.output_text
    assert response.usage is not None and response.usage.input_tokens > 0


def test_a_response_streams_its_events(client: openai.OpenAI) -> None:
    events = list(
        client.responses.create(
            model="default", input="Say hello.", max_output_tokens=8, stream=True
        )
    )
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] in ("response.completed", "response.incomplete")
    assert "response.output_item.added" in kinds and "response.output_text.delta" in kinds
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert events[-1].response.output_text == text  # type: ignore[union-attr]


def test_a_forced_function_call_comes_back_as_an_output_item(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model="tiny-hermes",
        input="Plan a trip to Rome.",
        tools=[TRIP],  # type: ignore[list-item]
        tool_choice={"type": "function", "name": "plan_trip"},
        max_output_tokens=60,
    )
    (call,) = [item for item in response.output if item.type == "function_call"]
    assert call.name == "plan_trip" and call.call_id
    jsonschema.validate(json.loads(call.arguments), TRIP["parameters"])


def test_a_streamed_function_call_and_its_output_round_trip(client: openai.OpenAI) -> None:
    events = list(
        client.responses.create(
            model="tiny-llama3",
            input="Plan a trip.",
            tools=[TRIP],  # type: ignore[list-item]
            tool_choice="required",
            max_output_tokens=60,
            stream=True,
        )
    )
    deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert deltas and done and "".join(deltas) == done[0].arguments
    final = events[-1].response  # type: ignore[union-attr]
    call = final.output[0]
    assert call.type == "function_call"
    follow_up = client.responses.create(
        model="tiny-llama3",
        input=[
            {"role": "user", "content": "Plan a trip."},
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": "booked"},
        ],
        tools=[TRIP],  # type: ignore[list-item]
        max_output_tokens=4,
    )
    assert follow_up.status in ("completed", "incomplete")


def test_stored_responses_are_a_clear_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="default", input="hi", store=True)
    assert err.value.param == "store"
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="default", input="hi", previous_response_id="resp_1")
    assert err.value.param == "previous_response_id"


def test_a_prompt_over_the_context_is_a_context_length_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="default", input="word " * 3000, max_output_tokens=8)
    assert err.value.code == "context_length_exceeded"


def test_base64_embeddings_equal_the_float_ones(client: openai.OpenAI) -> None:
    texts = ["the deploy target is kestrel", "numpy is pinned below 2"]
    floats = client.embeddings.create(model="default", input=texts, encoding_format="float")
    packed = client.embeddings.create(model="default", input=texts, encoding_format="base64")
    by_default = client.embeddings.create(model="default", input=texts)  # base64, decoded
    assert len(floats.data) == len(packed.data) == len(by_default.data) == 2
    for a, b, c in zip(floats.data, packed.data, by_default.data, strict=True):
        raw = np.frombuffer(base64.b64decode(str(b.embedding)), dtype=np.float32)
        assert raw.tolist() == pytest.approx(a.embedding, abs=1e-7)
        assert c.embedding == pytest.approx(a.embedding, abs=1e-7)


def test_hosted_and_namespace_tools_are_left_out_not_refused(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model="tiny-hermes",
        input=[
            {"role": "developer", "content": "You are a coding agent."},
            {"role": "developer", "content": "Sandbox: read-only."},
            {"role": "user", "content": "Plan a trip."},
        ],
        tools=[
            TRIP,  # type: ignore[list-item]
            {"type": "web_search"},  # type: ignore[list-item]
            {"type": "namespace", "name": "agents", "tools": []},  # type: ignore[list-item]
        ],
        tool_choice="required",
        max_output_tokens=60,
    )
    assert [item.type for item in response.output] == ["function_call"]


def test_text_format_json_schema_is_enforced(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "enum": ["Paris", "Rome"]},
            "days": {"type": "integer"},
        },
        "required": ["city", "days"],
        "additionalProperties": False,
    }
    response = client.responses.create(
        model="tiny-hermes",
        input="Plan a trip as JSON.",
        text={"format": {"type": "json_schema", "name": "trip", "schema": schema, "strict": True}},
        max_output_tokens=60,
    )
    jsonschema.validate(json.loads(response.output_text), schema)
