"""The inference service's OpenAI routes on the shipped SmolLM2 (no mocks of llama.cpp)."""

from __future__ import annotations

import json

import httpx

VERSION = "x-hivemind-model-version"


def test_models_lists_default_with_its_version_and_alias(inference: httpx.Client) -> None:
    body = inference.get("/v1/models").json()
    card = body["data"][0]
    assert card["id"] == "default"
    assert "smollm2-135m-instruct" in card["aliases"]
    assert card["version"] == "base"
    assert card["fim"] is False


def test_every_route_but_health_needs_the_internal_token(inference_url: str) -> None:
    assert httpx.get(inference_url + "/v1/models").status_code == 401
    assert httpx.post(inference_url + "/admin/models/default/load", json={}).status_code == 401
    assert httpx.get(inference_url + "/healthz").status_code == 200


def test_chat_answers_with_the_chat_template_and_version_header(inference: httpx.Client) -> None:
    r = inference.post(
        "/v1/chat/completions",
        json={
            "model": "smollm2-135m-instruct",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hi"}]}],
            "max_tokens": 8,
            "temperature": 0,
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert r.headers[VERSION] == "base"
    assert body["model"] == "default"
    assert body["choices"][0]["message"]["content"]
    assert body["usage"]["completion_tokens"] <= 8


def test_chat_stream_sends_chunks_usage_and_done(inference: httpx.Client) -> None:
    events = []
    with inference.stream(
        "POST",
        "/v1/chat/completions",
        json={
            "messages": [{"role": "user", "content": "Count to three"}],
            "max_tokens": 6,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    ) as r:
        assert r.status_code == 200
        assert r.headers[VERSION] == "base"
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["object"] == "chat.completion.chunk"
    assert chunks[-1]["usage"]["completion_tokens"] >= 1


def test_a_forced_tool_choice_returns_a_tool_call(inference: httpx.Client) -> None:
    tool = {
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
    r = inference.post(
        "/v1/chat/completions",
        json={
            "messages": [{"role": "user", "content": "Weather in Paris?"}],
            "tools": [tool],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "max_tokens": 40,
            "temperature": 0,
        },
    )
    assert r.status_code == 200, r.text
    call = r.json()["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather"
    assert "city" in json.loads(call["function"]["arguments"])


def test_an_oversized_prompt_is_a_400_naming_the_context(inference: httpx.Client) -> None:
    r = inference.post(
        "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "word " * 3000}], "max_tokens": 4},
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "context_length_exceeded"


def test_an_oversized_stream_is_a_400_before_any_event(inference: httpx.Client) -> None:
    r = inference.post(
        "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "word " * 3000}], "stream": True},
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "context_length_exceeded"


def test_image_parts_are_refused_clearly(inference: httpx.Client) -> None:
    part = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    r = inference.post(
        "/v1/chat/completions", json={"messages": [{"role": "user", "content": [part]}]}
    )
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "messages[0].content[0]"


def test_an_unknown_model_is_a_404_model_not_found(inference: httpx.Client) -> None:
    r = inference.post(
        "/v1/chat/completions",
        json={"model": "gpt-17", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "model_not_found"


def test_text_completion_is_deterministic_at_temperature_zero(inference: httpx.Client) -> None:
    body = {"prompt": "Once upon a time", "max_tokens": 6, "temperature": 0}
    first = inference.post("/v1/completions", json=body).json()
    second = inference.post("/v1/completions", json=body).json()
    assert first["choices"][0]["text"] == second["choices"][0]["text"] != ""


def test_suffix_without_fim_tokens_says_it_cannot(inference: httpx.Client) -> None:
    r = inference.post(
        "/v1/completions", json={"prompt": "def f():", "suffix": "return 1", "max_tokens": 4}
    )
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "fim_not_supported" and err["param"] == "suffix"


def test_tokenize_and_detokenize_round_trip(inference: httpx.Client) -> None:
    toks = inference.post("/tokenize", json={"content": "hello world"}).json()
    assert toks["count"] == len(toks["tokens"]) > 0
    back = inference.post("/detokenize", json={"tokens": toks["tokens"]}).json()
    assert back["content"].strip() == "hello world"
    chat = inference.post("/tokenize", json={"messages": [{"role": "user", "content": "hi"}]})
    assert chat.json()["count"] > toks["count"]
    bad = inference.post("/detokenize", json={"tokens": [10**9]})
    assert bad.status_code == 400


def _chat(inference: httpx.Client, **body: object) -> httpx.Response:
    messages = [{"role": "user", "content": "Write a short sentence about the sea."}]
    return inference.post(
        "/v1/chat/completions",
        json={"messages": messages, "max_tokens": 24, "temperature": 0, **body},
    )


def test_one_stop_string_is_one_stop_not_its_characters(inference: httpx.Client) -> None:
    # "stop": "END" was unpacked into "E", "N", "D" beside the template's stops
    whole = _chat(inference).json()["choices"][0]["message"]["content"]
    words = [w for w in whole.split() if len(w) >= 4]
    assert words, whole
    word = words[len(words) // 2]
    as_string = _chat(inference, stop=word).json()["choices"][0]["message"]["content"]
    as_list = _chat(inference, stop=[word]).json()["choices"][0]["message"]["content"]
    assert as_string == as_list
    assert whole.startswith(as_string) and len(as_string) >= whole.index(word) - 1


def test_bad_sampling_and_tool_inputs_are_400s_before_any_generation(
    inference: httpx.Client,
) -> None:
    tool = {"type": "function", "function": {"name": "get", "parameters": {"type": "object"}}}
    invalid_schema = {
        "type": "json_schema",
        "json_schema": {"name": "x", "strict": True, "schema": {
            "type": "object", "properties": {"a": {"type": "string"}}, "required": ["a", "a"]}},
    }  # fmt: skip
    for body, param in (
        ({"response_format": invalid_schema}, "response_format.json_schema.schema"),
        ({"tools": [tool], "tool_choice": {"type": "function", "function": "get"}}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tool_choice": {"type": "function", "function": {"name": "get"}}}, "tool_choice"),
        ({"logit_bias": {"999999999": 5}}, "logit_bias"),
        ({"logit_bias": {"-1": 5}}, "logit_bias"),
    ):
        r = _chat(inference, **body)
        assert r.status_code == 400, (body, r.status_code, r.text)
        assert r.json()["error"]["param"] == param, r.text


def test_a_prefilled_answer_goes_on_from_the_final_assistant_message(
    inference: httpx.Client,
) -> None:
    """Anthropic's prefill: the final assistant message was rendered as a closed turn and a new
    one opened, so the answer ignored it."""
    whole = _chat(inference).json()["choices"][0]["message"]["content"]
    cut = whole.index(" ", 8) if " " in whole[8:] else len(whole) // 2
    prefill = whole[:cut]
    messages = [
        {"role": "user", "content": "Write a short sentence about the sea."},
        {"role": "assistant", "content": prefill},
    ]
    body = {"messages": messages, "max_tokens": 24, "temperature": 0}
    went_on = inference.post(
        "/v1/chat/completions", json={**body, "continue_final_message": True}
    ).json()["choices"][0]["message"]["content"]
    assert (prefill + went_on).startswith(whole[: cut + 8]), (prefill, went_on, whole)
    refused = inference.post(
        "/v1/chat/completions",
        json={**body, "messages": messages[:1], "continue_final_message": True},
    )
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "messages"


def test_an_empty_stop_string_stops_nothing(inference: httpx.Client) -> None:
    whole = _chat(inference).json()["choices"][0]["message"]["content"]
    assert whole
    for stop in ("", [""], ["", "@@never@@"]):
        assert _chat(inference, stop=stop).json()["choices"][0]["message"]["content"] == whole
