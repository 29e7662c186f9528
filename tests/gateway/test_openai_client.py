"""The gateway's /v1 through the official openai client, against the real SmolLM2 service."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from inference.serving import shared_inference_url

from support.embedding import shared_embedding_url
from support.gateway import RunningGateway, running_gateway

VERSION = "x-hivemind-model-version"


@pytest.fixture
def llm_gateway(redis_url: str, internal_token: str, data_dir: Path) -> Iterator[RunningGateway]:
    """A gateway with real inference (SmolLM2) and embedding (MiniLM) services behind it."""
    with running_gateway(
        redis_url,
        internal_token,
        data_dir,
        inference_url=shared_inference_url(internal_token, redis_url),
        embedding_url=shared_embedding_url(internal_token),
        trainer_url="http://127.0.0.1:9",
    ) as gw:
        yield gw


@pytest.fixture
def client(llm_gateway: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=llm_gateway.url + "/v1", api_key=llm_gateway.key(role="read"), max_retries=0
    )


def test_chat_answers_through_the_gateway_with_the_served_version(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="default",
        messages=[{"role": "user", "content": "Say hi"}],
        max_tokens=8,
        temperature=0.5,
    )
    completion = raw.parse()
    assert raw.headers[VERSION] == "base"
    assert completion.choices[0].message.content
    assert completion.model == "default"
    assert completion.system_fingerprint == "base"


def test_chat_streams_chunks_and_ends(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="smollm2-135m-instruct",
        messages=[{"role": "user", "content": "Count to three"}],
        max_tokens=6,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= 1


def test_content_parts_and_null_content_are_accepted(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="default",
        messages=[
            {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
            {"role": "user", "content": [{"type": "text", "text": "Name a color."}]},
            {"role": "assistant", "content": None, "tool_calls": []},
            {"role": "user", "content": "Another one."},
        ],
        max_tokens=6,
    )
    assert completion.choices[0].finish_reason in ("stop", "length")


def test_tools_and_tool_choice_pass_through_to_a_tool_call(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="default",
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "parameters": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                    },
                },
            }
        ],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=40,
        temperature=0,
    )
    call = completion.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert "city" in json.loads(call.function.arguments)


def test_stop_and_seed_pass_through(client: openai.OpenAI) -> None:
    kwargs = {
        "model": "default",
        "messages": [{"role": "user", "content": "List three animals, one per line."}],
        "max_tokens": 30,
        "temperature": 0.9,
        "seed": 7,
        "stop": ["\n"],
    }
    first = client.chat.completions.create(**kwargs)  # type: ignore[call-overload]
    second = client.chat.completions.create(**kwargs)  # type: ignore[call-overload]
    assert "\n" not in (first.choices[0].message.content or "")
    assert first.choices[0].message.content == second.choices[0].message.content


def test_text_completions_and_a_clear_fim_refusal(client: openai.OpenAI) -> None:
    done = client.completions.create(model="default", prompt="Once upon a time", max_tokens=5)
    assert done.choices[0].text
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(
            model="default", prompt="def f():\n", suffix="\nreturn x", max_tokens=5
        )
    assert err.value.code == "fim_not_supported"
    assert "fill-in-the-middle" in err.value.message


def test_models_come_from_the_inference_registry(client: openai.OpenAI) -> None:
    models = {m.id: m for m in client.models.list()}
    assert {"default", "auto"} <= set(models)
    assert models["default"].model_extra["version"] == "base"  # type: ignore[index]
    assert client.models.retrieve("smollm2-135m-instruct").id == "default"


def test_embeddings_go_to_the_embedding_service(client: openai.OpenAI) -> None:
    result = client.embeddings.create(model="all-minilm-l6-v2", input=["hello", "world"])
    assert len(result.data) == 2 and len(result.data[0].embedding) == 384


def test_auto_routes_to_a_served_model(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    assert completion.model == "default"


def test_a_bad_model_name_is_a_404_error_object(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(
            model="gpt-17", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
    assert err.value.code == "model_not_found"
    assert err.value.param == "model"


def test_an_oversized_prompt_is_a_400_error_object(client: openai.OpenAI) -> None:
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(
                model="default",
                messages=[{"role": "user", "content": "word " * 3000}],
                max_tokens=2,
                stream=stream,
            )
        assert err.value.code == "context_length_exceeded"


def test_malformed_bodies_are_400_never_500(llm_gateway: RunningGateway) -> None:
    headers = {
        "Authorization": f"Bearer {llm_gateway.key(role='read')}",
        "Content-Type": "application/json",
    }
    bodies = [
        b"{not json",
        b"[]",
        json.dumps({"model": "default"}).encode(),
        json.dumps({"model": "default", "messages": []}).encode(),
        json.dumps({"model": "default", "messages": [{"role": "wizard", "content": "x"}]}).encode(),
        json.dumps({"model": "default", "messages": "hi"}).encode(),
        json.dumps(
            {"model": "default", "messages": [{"role": "user", "content": "x"}], "temperature": 9}
        ).encode(),
        json.dumps(
            {"model": "default", "messages": [{"role": "user", "content": "x"}], "hivemind": 3}
        ).encode(),
    ]
    for body in bodies:
        r = httpx.post(
            llm_gateway.url + "/v1/chat/completions", content=body, headers=headers, timeout=30
        )
        assert r.status_code == 400, (body, r.status_code, r.text)
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_no_key_is_a_401_error_object(llm_gateway: RunningGateway) -> None:
    client = openai.OpenAI(base_url=llm_gateway.url + "/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_a_client_leaving_a_gateway_stream_stops_the_generation_upstream(
    llm_gateway: RunningGateway, redis_url: str, internal_token: str
) -> None:
    from support.waiting import wait_until

    inference = httpx.Client(
        base_url=shared_inference_url(internal_token, redis_url),
        headers={"Authorization": f"Bearer {internal_token}"},
        timeout=30,
    )
    body = {
        "model": "default",
        "messages": [{"role": "user", "content": "Write a very long story about the sea."}],
        "max_tokens": 900,
        "stream": True,
        "hivemind": {"rag": False},
    }
    with llm_gateway.client(role="read") as gw, inference:
        with gw.stream("POST", "/v1/chat/completions", json=body) as r:
            assert r.status_code == 200
            next(line for line in r.iter_lines() if line.startswith("data: {"))

        def idle() -> bool:
            return inference.get("/admin/models").json()["data"][0]["queue_depth"] == 0

        wait_until(idle, timeout=8, what="inference to stop generating")
