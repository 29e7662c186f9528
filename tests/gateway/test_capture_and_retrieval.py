"""Capture of completed chats onto the learning stream, and retrieval injected into chats."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import redis
from inference.serving import gateway_with_llm

from hivemind_common import keys
from hivemind_common.jobs import LearningSample
from support.gateway import RunningGateway
from support.waiting import wait_until

ASK = {
    "model": "default",
    "messages": [{"role": "user", "content": "Name one colour."}],
    "max_tokens": 6,
    "temperature": 0.5,
}


@pytest.fixture
def gw(redis_url: str, internal_token: str, data_dir: Path) -> Iterator[RunningGateway]:
    with gateway_with_llm(redis_url, internal_token, data_dir) as running:
        yield running


def _samples(redis_url: str) -> list[LearningSample]:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    return [LearningSample.from_fields(f) for _, f in r.xrange(keys.learning_stream())]


def _chat(gw: RunningGateway, role: str, body: dict[str, Any]) -> Any:
    with gw.client(role=role) as c:
        return c.post("/v1/chat/completions", json=body)


def test_capture_is_off_by_default(gw: RunningGateway, redis_url: str) -> None:
    assert _chat(gw, "write", ASK).status_code == 200
    assert _samples(redis_url) == []


def test_a_request_that_asks_is_captured_with_answer_version_and_latency(
    gw: RunningGateway, redis_url: str
) -> None:
    r = _chat(gw, "write", {**ASK, "hivemind": {"capture": True, "rag": False}})
    assert r.status_code == 200
    [sample] = _samples(redis_url)
    assert sample.source == "capture" and sample.tenant == "acme"
    assert sample.messages[0].content == "Name one colour."
    assert sample.messages[-1].role == "assistant"
    assert sample.messages[-1].content == r.json()["choices"][0]["message"]["content"]
    assert sample.model_version == "base" and sample.latency_ms and sample.latency_ms > 0


def test_a_read_key_cannot_ask_for_capture(gw: RunningGateway, redis_url: str) -> None:
    r = _chat(gw, "read", {**ASK, "hivemind": {"capture": True}})
    assert r.status_code == 403
    assert r.json()["error"]["type"] == "permission_error"
    assert _samples(redis_url) == []


def test_the_tenant_switch_captures_and_a_request_can_opt_out(
    gw: RunningGateway, redis_url: str
) -> None:
    redis.Redis.from_url(redis_url).hset(keys.tenant_settings("acme"), "capture", "1")
    assert _chat(gw, "write", ASK).status_code == 200
    assert _chat(gw, "write", {**ASK, "hivemind": {"capture": False}}).status_code == 200
    assert _chat(gw, "read", ASK).status_code == 200  # read keys' chats stay out
    assert len(_samples(redis_url)) == 1


def test_failed_requests_are_never_captured(gw: RunningGateway, redis_url: str) -> None:
    capture = {"hivemind": {"capture": True}}
    assert _chat(gw, "write", {**ASK, **capture, "model": "nope"}).status_code == 404
    huge = {**ASK, **capture, "messages": [{"role": "user", "content": "word " * 3000}]}
    assert _chat(gw, "write", huge).status_code == 400
    assert _samples(redis_url) == []


def test_a_streamed_chat_is_captured_once_it_completes(gw: RunningGateway, redis_url: str) -> None:
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=gw.key(role="write"), max_retries=0)
    stream = client.chat.completions.create(
        model="default",
        messages=ASK["messages"],
        max_tokens=6,
        stream=True,
        extra_body={"hivemind": {"capture": True, "rag": False}},
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    [sample] = _samples(redis_url)
    assert sample.messages[-1].content == text


def test_retrieved_facts_reach_the_prompt_but_the_capture_keeps_only_their_ids(
    gw: RunningGateway, redis_url: str
) -> None:
    fact = "The deploy target of project atlas is the staging cluster named kestrel."
    with gw.client(role="write") as c:
        assert c.put("/v1/facts/atlas-deploy", json={"value": fact}).status_code in (200, 201)

        def indexed() -> bool:
            hit = c.post("/v1/rag/context", json={"query": "deploy target of project atlas"})
            return "kestrel" in hit.json().get("text", "")

        wait_until(indexed, timeout=30, what="the fact to be searchable")
        r = c.post(
            "/v1/chat/completions",
            json={
                "model": "default",
                "messages": [{"role": "user", "content": "What is the deploy target of atlas?"}],
                "max_tokens": 8,
                "temperature": 0,
                "hivemind": {"capture": True},
            },
        )
    assert r.status_code == 200, r.text
    assert int(r.headers["x-hivemind-rag-items"]) >= 1
    [sample] = _samples(redis_url)
    # the caller's own turn and the answer; the injected text never reaches the learning stream
    assert [m.role for m in sample.messages] == ["user", "assistant"]
    assert sample.messages[0].content == "What is the deploy target of atlas?"
    assert "Relevant context" not in json.dumps([m.content for m in sample.messages])
    assert any("atlas-deploy" in item for item in sample.retrieved)


def test_retrieval_that_does_not_fit_the_token_budget_is_left_out(
    redis_url: str, internal_token: str, data_dir: Path
) -> None:
    fact = "The deploy target of project atlas is the staging cluster named kestrel."
    question = [{"role": "user", "content": "What is the deploy target of atlas?"}]
    with (
        gateway_with_llm(redis_url, internal_token, data_dir, rag_budget_tokens=6) as small,
        small.client(role="write") as c,
    ):
        c.put("/v1/facts/atlas-deploy", json={"value": fact}).raise_for_status()

        def indexed() -> bool:
            # its own budget: the route's default is the gateway's, 6 tokens here
            probe = {"query": "deploy target of atlas", "budget_tokens": 512}
            hit = c.post("/v1/rag/context", json=probe)
            return "kestrel" in hit.json().get("text", "")

        wait_until(indexed, timeout=30, what="the fact to be searchable")
        body = {"model": "default", "messages": question, "max_tokens": 2}
        r = c.post("/v1/chat/completions", json={**body, "hivemind": {"capture": True}})
    assert r.status_code == 200
    assert r.headers["x-hivemind-rag-items"] == "0"
    [sample] = _samples(redis_url)
    assert "kestrel" not in json.dumps([m.content for m in sample.messages])


def test_a_prefill_and_its_continuation_are_captured_as_one_turn(
    gw: RunningGateway, redis_url: str
) -> None:
    """A prefill was captured as an assistant turn followed by a second one holding only the
    continuation: a training sample that taught a model to answer its own fragment."""
    messages = [*ASK["messages"], {"role": "assistant", "content": "My answer:"}]
    body = {**ASK, "messages": messages, "continue_final_message": True,
            "hivemind": {"capture": True, "rag": False}}  # fmt: skip
    r = _chat(gw, "write", body)
    assert r.status_code == 200, r.text
    [sample] = _samples(redis_url)
    assert [m.role for m in sample.messages] == ["user", "assistant"]
    went_on = r.json()["choices"][0]["message"]["content"] or ""
    assert sample.messages[-1].content == "My answer:" + went_on
