"""The response cache: deterministic requests only, keyed on the served version, replayable."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from inference.serving import gateway_with_llm, running_inference

from support.gateway import RunningGateway

CACHE = "x-hivemind-cache"
VERSION = "x-hivemind-model-version"
ASK = {
    "model": "default",
    "messages": [{"role": "user", "content": "Name one planet."}],
    "max_tokens": 8,
    "hivemind": {"rag": False},
}


@pytest.fixture
def gw(redis_url: str, internal_token: str, data_dir: Path) -> Iterator[RunningGateway]:
    with gateway_with_llm(redis_url, internal_token, data_dir) as running:
        yield running


def test_temperature_zero_is_answered_from_the_cache_the_second_time(gw: RunningGateway) -> None:
    with gw.client(role="read") as c:
        first = c.post("/v1/chat/completions", json={**ASK, "temperature": 0})
        second = c.post("/v1/chat/completions", json={**ASK, "temperature": 0})
    assert first.headers[CACHE] == "miss" and second.headers[CACHE] == "hit"
    assert first.json() == second.json()
    assert second.headers[VERSION] == "base"
    exposed = httpx.get(gw.url + "/metrics", timeout=10).text
    assert 'hivemind_gateway_response_cache_total{kind="chat",result="hit"}' in exposed


def test_a_seed_makes_a_request_cacheable_and_sampled_ones_never_are(gw: RunningGateway) -> None:
    with gw.client(role="read") as c:
        seeded = [
            c.post("/v1/chat/completions", json={**ASK, "temperature": 0.8, "seed": 3})
            for _ in range(2)
        ]
        sampled = [
            c.post("/v1/chat/completions", json={**ASK, "temperature": 0.8}) for _ in range(2)
        ]
    assert [r.headers[CACHE] for r in seeded] == ["miss", "hit"]
    assert [r.headers[CACHE] for r in sampled] == ["bypass", "bypass"]


def test_every_sampling_parameter_is_part_of_the_key(gw: RunningGateway) -> None:
    with gw.client(role="read") as c:
        c.post("/v1/chat/completions", json={**ASK, "temperature": 0})
        other = c.post("/v1/chat/completions", json={**ASK, "temperature": 0, "max_tokens": 9})
        stop = c.post("/v1/chat/completions", json={**ASK, "temperature": 0, "stop": ["x"]})
        same = c.post("/v1/chat/completions", json={**ASK, "temperature": 0})
    assert other.headers[CACHE] == "miss" and stop.headers[CACHE] == "miss"
    assert same.headers[CACHE] == "hit"


def test_tenants_never_share_cached_answers(gw: RunningGateway) -> None:
    with gw.client(tenant="acme", role="read") as a, gw.client(tenant="globex", role="read") as b:
        a.post("/v1/chat/completions", json={**ASK, "temperature": 0})
        other = b.post("/v1/chat/completions", json={**ASK, "temperature": 0})
    assert other.headers[CACHE] == "miss"


def test_a_cached_answer_replays_as_a_stream(gw: RunningGateway) -> None:
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=gw.key(role="read"), max_retries=0)
    kwargs = {
        "model": "default",
        "messages": ASK["messages"],
        "max_tokens": 8,
        "temperature": 0,
        "extra_body": {"hivemind": {"rag": False}},
    }
    streamed = client.chat.completions.with_raw_response.create(stream=True, **kwargs)
    assert streamed.headers[CACHE] == "miss"
    text = "".join(c.choices[0].delta.content or "" for c in streamed.parse() if c.choices)
    replay = client.chat.completions.with_raw_response.create(stream=True, **kwargs)
    assert replay.headers[CACHE] == "hit"
    chunks = list(replay.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    whole = client.chat.completions.with_raw_response.create(**kwargs)
    assert whole.headers[CACHE] == "hit"
    assert whole.parse().choices[0].message.content == text


def test_a_stream_cached_without_usage_still_answers_usage_to_whoever_asks(
    gw: RunningGateway,
) -> None:
    """A stream asked without include_usage was cached with usage null: a later identical
    request asking for usage got no usage chunk, and a whole one got "usage": null."""
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=gw.key(role="read"), max_retries=0)
    kwargs = {
        "model": "default",
        "messages": [{"role": "user", "content": "Name one colour."}],
        "max_tokens": 8,
        "temperature": 0,
        "extra_body": {"hivemind": {"rag": False}},
    }
    plain = client.chat.completions.with_raw_response.create(stream=True, **kwargs)
    assert plain.headers[CACHE] == "miss"
    assert all(c.usage is None for c in plain.parse())  # not asked: not sent
    asked = client.chat.completions.with_raw_response.create(
        stream=True, stream_options={"include_usage": True}, **kwargs
    )
    assert asked.headers[CACHE] == "hit"
    usage = [c.usage for c in asked.parse() if c.usage is not None]
    assert len(usage) == 1 and usage[0].completion_tokens > 0
    whole = client.chat.completions.with_raw_response.create(**kwargs)
    assert whole.headers[CACHE] == "hit" and whole.parse().usage is not None


def test_a_gathered_stream_keeps_its_reasoning() -> None:
    from hivemind_gateway.openai.respcache import replay_chunks
    from hivemind_gateway.openai.streaming import Gathered

    g = Gathered(chat=True)
    for delta in ({"reasoning_content": "let me "}, {"reasoning_content": "think"},
                  {"content": "42"}):  # fmt: skip
        g.add({"id": "c", "choices": [{"index": 0, "delta": delta}]})
    g.add({"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    message = g.response()["choices"][0]["message"]
    assert message["reasoning_content"] == "let me think" and message["content"] == "42"
    first = next(replay_chunks(g.response()))
    assert first["choices"][0]["delta"]["reasoning_content"] == "let me think"


def test_logprobs_are_part_of_the_key_and_replay_from_the_cache(gw: RunningGateway) -> None:
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=gw.key(role="read"), max_retries=0)
    kwargs = {
        "model": "default",
        "messages": ASK["messages"],
        "max_tokens": 8,
        "temperature": 0,
        "extra_body": {"hivemind": {"rag": False}},
    }
    plain = client.chat.completions.with_raw_response.create(**kwargs)
    assert plain.headers[CACHE] == "miss"
    # streamed first: the answer is gathered from the chunks, logprobs included, then cached
    with_lp = {**kwargs, "logprobs": True, "top_logprobs": 2}
    streamed = client.chat.completions.with_raw_response.create(stream=True, **with_lp)
    assert streamed.headers[CACHE] == "miss"  # not the plain answer, which has no logprobs
    tokens = [
        e.token
        for c in streamed.parse()
        if c.choices and c.choices[0].logprobs
        for e in c.choices[0].logprobs.content or []
    ]
    whole = client.chat.completions.with_raw_response.create(**with_lp)
    assert whole.headers[CACHE] == "hit"
    choice = whole.parse().choices[0]
    assert choice.logprobs is not None and choice.logprobs.content
    assert [e.token for e in choice.logprobs.content] == tokens
    assert "".join(tokens) == choice.message.content
    assert all(len(e.top_logprobs) == 2 for e in choice.logprobs.content)
    replay = client.chat.completions.with_raw_response.create(stream=True, **with_lp)
    assert replay.headers[CACHE] == "hit"
    replayed = [
        e.token
        for c in replay.parse()
        if c.choices and c.choices[0].logprobs
        for e in c.choices[0].logprobs.content or []
    ]
    assert replayed == tokens
    other_top = client.chat.completions.with_raw_response.create(**{**with_lp, "top_logprobs": 3})
    assert other_top.headers[CACHE] == "miss"


@pytest.mark.slow
def test_a_swap_changes_the_key_so_nothing_stale_is_served(
    redis_url: str, internal_token: str, data_dir: Path, tmp_path: Path
) -> None:
    from hivemind_common.models_paths import default_llm_gguf

    copy = tmp_path / "next.gguf"
    copy.write_bytes(default_llm_gguf().read_bytes())
    with (
        running_inference(internal_token, redis_url) as inf_url,
        gateway_with_llm(redis_url, internal_token, data_dir, inference_url=inf_url) as gw,
        gw.client(role="read") as c,
    ):
        body = {**ASK, "temperature": 0}
        assert c.post("/v1/chat/completions", json=body).headers[CACHE] == "miss"
        assert c.post("/v1/chat/completions", json=body).headers[CACHE] == "hit"
        swap = httpx.post(
            inf_url + "/admin/models/default/load",
            json={"gguf": str(copy), "version": "v2"},
            headers={"Authorization": f"Bearer {internal_token}"},
            timeout=120,
        )
        assert swap.status_code == 200, swap.text
        after = c.post("/v1/chat/completions", json=body)
        assert after.headers[CACHE] == "miss" and after.headers[VERSION] == "v2"
        again = c.post("/v1/chat/completions", json=body)
        assert again.headers[CACHE] == "hit" and again.headers[VERSION] == "v2"
