"""Logprobs and ``n`` choices through the gateway, with the official openai client on SmolLM2."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from inference.serving import gateway_with_llm

from support.gateway import RunningGateway

MESSAGES = [{"role": "user", "content": "Name three colors."}]
NO_RAG = {"hivemind": {"rag": False}}


@pytest.fixture
def gw(redis_url: str, internal_token: str, data_dir: Path) -> Iterator[RunningGateway]:
    with gateway_with_llm(redis_url, internal_token, data_dir) as running:
        yield running


@pytest.fixture
def client(gw: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=gw.key(role="read"), max_retries=0)


def test_chat_logprobs_come_back_in_openais_shape(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="default",
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=10,
        temperature=0,
        logprobs=True,
        top_logprobs=4,
        extra_body=NO_RAG,
    )
    choice = completion.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content
    entries = choice.logprobs.content
    assert "".join(e.token for e in entries) == choice.message.content
    for e in entries:
        assert e.logprob <= 0 and e.bytes == list(e.token.encode())
        assert len(e.top_logprobs) == 4
        assert e.logprob == max(t.logprob for t in e.top_logprobs)  # greedy picks the best


def test_streamed_chat_carries_logprobs_in_its_chunks(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="default",
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=10,
        temperature=0,
        logprobs=True,
        top_logprobs=1,
        stream=True,
        extra_body=NO_RAG,
    )
    text, tokens = "", []
    for chunk in stream:
        if not chunk.choices:
            continue
        text += chunk.choices[0].delta.content or ""
        if chunk.choices[0].logprobs and chunk.choices[0].logprobs.content:
            tokens += [e.token for e in chunk.choices[0].logprobs.content]
    assert text and "".join(tokens) == text


def test_text_completion_logprobs_use_the_legacy_shape(client: openai.OpenAI) -> None:
    done = client.completions.create(
        model="default", prompt="Once upon a time", max_tokens=6, temperature=0, logprobs=2
    )
    lp = done.choices[0].logprobs
    assert lp is not None and lp.tokens and lp.token_logprobs and lp.top_logprobs
    assert "".join(lp.tokens) == done.choices[0].text
    assert all(x <= 0 for x in lp.token_logprobs)
    assert lp.text_offset is not None and lp.text_offset[0] == len("Once upon a time")


def test_top_logprobs_out_of_range_or_alone_is_a_400(client: openai.OpenAI) -> None:
    for extra in ({"logprobs": True, "top_logprobs": 21}, {"top_logprobs": 2}):
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(
                model="default",
                messages=MESSAGES,  # type: ignore[arg-type]
                max_tokens=2,
                **extra,  # type: ignore[arg-type]
            )
        assert err.value.param == "top_logprobs"


def test_n_choices_stream_through_with_their_index(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="default",
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=8,
        n=2,
        temperature=0.9,
        stream=True,
        extra_body=NO_RAG,
    )
    texts: dict[int, str] = {}
    finished: set[int] = set()
    for chunk in stream:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
            if choice.finish_reason:
                finished.add(choice.index)
    assert finished == {0, 1} and all(texts.values())


def test_n_choices_whole_through_the_gateway(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="default",
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=6,
        n=2,
        seed=5,
        extra_body=NO_RAG,
    )
    assert [c.index for c in completion.choices] == [0, 1]
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model="default",
            messages=MESSAGES,  # type: ignore[arg-type]
            max_tokens=2,
            n=9,
            stream=True,
        )
    assert err.value.param == "n"
