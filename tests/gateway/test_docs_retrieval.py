"""Reference library passages in /v1/rag/context and in chats: same gate, own budget share,
collections to use or skip, citations as source:lines."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hivemind_gateway.rag.service import DOCS_HEADER, estimate_tokens
from support.embedding import shared_embedding_url
from support.gateway import running_gateway
from support.stub_inference import StubInference, stub_inference
from support.waiting import wait_until

RUNBOOK = """# Runbook

## Rotating the Redis password

Generate a new password with `openssl rand -hex 32`, store it as the podman secret
hivemind-redis-url, then restart the gateway, the trainer and the exporter in that order.
Old connections keep working until the restart.

## Unrelated section

The office plants are watered on Fridays.
"""


@pytest.fixture
def stub() -> Iterator[StubInference]:
    with stub_inference() as running:
        yield running


def _gateway(
    redis_url: str, internal_token: str, data_dir: Path, stub: StubInference, **kw: Any
) -> Any:
    return running_gateway(
        redis_url, internal_token, data_dir,
        embedding_url=shared_embedding_url(internal_token),
        inference_url=stub.url, trainer_url="http://127.0.0.1:9", **kw,
    )  # fmt: skip


def _seed(c: Any) -> None:
    r = c.post("/v1/docs", json={"source": "ops/runbook.md", "text": RUNBOOK, "collection": "ops"})
    assert r.status_code == 200, r.text
    fact = {"value": "The Redis password lives in the podman secret hivemind-redis-url"}
    assert c.put("/v1/facts/redis.password", json=fact).status_code == 200
    wait_until(
        lambda: c.get("/v1/rag/stats").json()["pending_vectors"] == 0,
        timeout=60, what="every chunk embedded",
    )  # fmt: skip


QUERY = "how do I rotate the redis password?"


def test_docs_are_injected_with_citations_under_their_share(
    redis_url: str, internal_token: str, data_dir: Path, stub: StubInference
) -> None:
    with _gateway(redis_url, internal_token, data_dir, stub) as gw, gw.client() as c:
        _seed(c)
        body = c.post("/v1/rag/context", json={"query": QUERY, "budget_tokens": 400}).json()
        kinds = [i["kind"] for i in body["items"]]
        assert "doc" in kinds and "fact" in kinds, body
        text = body["text"]
        assert "[ops/runbook.md:1-7] Runbook > Rotating the Redis password" in text, text
        assert "plants" not in body["text"]
        doc_block = body["text"][body["text"].index(DOCS_HEADER) :]
        assert estimate_tokens(doc_block) <= 200  # its share: half of 400
        small = c.post("/v1/rag/context", json={"query": QUERY, "budget_tokens": 60}).json()
        assert estimate_tokens(small["text"]) <= 61
        assert any(i["kind"] == "fact" for i in small["items"])  # docs never crowd facts out
        skipped = {"query": QUERY, "skip_collections": ["ops"]}
        assert all(
            i["kind"] != "doc" for i in c.post("/v1/rag/context", json=skipped).json()["items"]
        )
        other = {"query": QUERY, "collections": ["elsewhere"]}
        assert all(
            i["kind"] != "doc" for i in c.post("/v1/rag/context", json=other).json()["items"]
        )
        unrelated = c.post("/v1/rag/context", json={"query": "bake sourdough bread"}).json()
        assert unrelated["items"] == []  # the same gate: nothing weakly related gets in


def test_a_zero_share_keeps_docs_out(
    redis_url: str, internal_token: str, data_dir: Path, stub: StubInference
) -> None:
    with (
        _gateway(redis_url, internal_token, data_dir, stub, rag_docs_share=0.0) as gw,
        gw.client() as c,
    ):
        _seed(c)
        body = c.post("/v1/rag/context", json={"query": QUERY}).json()
        assert [i["kind"] for i in body["items"]] == ["fact"]


def test_chats_get_passages_and_the_hivemind_object_picks_collections(
    redis_url: str, internal_token: str, data_dir: Path, stub: StubInference
) -> None:
    ask = {"model": "default", "messages": [{"role": "user", "content": QUERY}]}
    with _gateway(redis_url, internal_token, data_dir, stub) as gw, gw.client() as c:
        _seed(c)
        assert c.post("/v1/chat/completions", json=ask).status_code == 200
        assert "[ops/runbook.md:1-7]" in json.dumps(stub.chats[-1]["messages"])
        skip = {**ask, "hivemind": {"skip_collections": ["ops"]}}
        assert c.post("/v1/chat/completions", json=skip).status_code == 200
        assert "runbook.md" not in json.dumps(stub.chats[-1]["messages"])
        use = {**ask, "hivemind": {"collections": ["ops"]}}
        assert c.post("/v1/chat/completions", json=use).status_code == 200
        assert "runbook.md" in json.dumps(stub.chats[-1]["messages"])
        bad = {**ask, "hivemind": {"collections": ["no spaces allowed"]}}
        assert c.post("/v1/chat/completions", json=bad).status_code == 400


def test_explain_lists_document_chunks_with_their_scores_and_reasons(
    redis_url: str, internal_token: str, data_dir: Path, stub: StubInference
) -> None:
    with _gateway(redis_url, internal_token, data_dir, stub) as gw, gw.client() as c:
        _seed(c)
        body = c.post("/v1/rag/context", json={"query": QUERY, "explain": True}).json()
        docs = [x for x in body["explain"]["candidates"] if x["kind"] == "doc"]
        assert docs and all(x["reason"] and x["lexical"] >= 0 for x in docs)
        injected = {x["key"] for x in docs if x["injected"]}
        assert injected == {i["key"] for i in body["items"] if i["kind"] == "doc"}
        assert body["explain"]["injected_text"] == body["text"]


CACHE_CODE = '''"""The response cache: which chat requests may be answered from the response cache.

A chat request may be answered from the response cache when its temperature is 0 or it
carries a seed, and it asks for one choice.
"""

import hashlib


def is_deterministic(body):
    """Whether a chat request may be answered from the response cache: temperature 0 or a
    seed, and one choice."""
    if (body.get("n") or 1) != 1:
        return False
    return body.get("temperature") == 0 or body.get("seed") is not None
'''


def test_passages_show_a_files_definition_before_its_module_docstring(
    redis_url: str, internal_token: str, data_dir: Path, stub: StubInference
) -> None:
    with _gateway(redis_url, internal_token, data_dir, stub) as gw, gw.client() as c:
        r = c.post("/v1/docs", json={"source": "gw/respcache.py", "text": CACHE_CODE})
        assert r.status_code == 200, r.text
        wait_until(
            lambda: c.get("/v1/rag/stats").json()["pending_vectors"] == 0,
            timeout=60, what="every chunk embedded",
        )  # fmt: skip
        query = "which chat requests may be answered from the response cache?"
        body = c.post("/v1/rag/context", json={"query": query, "explain": True}).json()
        docs = [x for x in body["explain"]["candidates"] if x["kind"] == "doc" and x["injected"]]
        assert [x["key"] for x in docs] == [i["key"] for i in body["items"] if i["kind"] == "doc"]
        assert len(docs) == 2, body["explain"]["candidates"]
        # both passed the gate; the docstring restates the query, yet the definition goes first
        assert docs[0]["text"].startswith("def is_deterministic")
        assert docs[1]["text"].startswith('"""The response cache')
        assert body["text"].index("def is_deterministic") < body["text"].index('"""The response')
