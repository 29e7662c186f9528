"""Values that once became 500s or silently changed data: non-finite and huge numbers, month
names that only case-fold to ASCII, sources that spoof a citation, oversized helper texts."""

from __future__ import annotations

import pytest

from hivemind_common.text import MAX_INT, find_bad_string
from hivemind_gateway.rag.scoring import query_window
from hivemind_gateway.storage_schema import parse_time
from support.gateway import RunningGateway


def test_non_json_numbers_are_found_wherever_they_are() -> None:
    assert find_bad_string({"a": [1, {"b": float("nan")}]}) == ("a.1.b", "not a finite number")
    assert find_bad_string({"x": float("inf")}) == ("x", "not a finite number")
    assert find_bad_string({"x": 10**400}) == ("x", "a number too large")
    assert find_bad_string({"x": MAX_INT, "y": -MAX_INT, "z": 1.5}) is None


def test_a_time_too_large_for_a_float_is_no_time() -> None:
    assert parse_time(10**400) is None and parse_time(float("nan")) is None
    assert parse_time(1_700_000_000) == 1_700_000_000.0


@pytest.mark.parametrize(
    "query", ["ſeptember 2022", "Auguſt 2022", "on 9 Aprıl, 2022", "APRİL 2022"]
)
def test_month_names_that_fold_only_in_unicode_name_no_time(query: str) -> None:
    assert query_window(query) is None
    assert query_window("SEPTEMBER 2022") is not None


@pytest.mark.parametrize(
    "raw",
    [
        b'{"text": "x", "metadata": {"v": NaN}}',
        b'{"text": "x", "metadata": {"v": Infinity}}',
        b'{"text": "x", "metadata": {"occurred_at": 1' + b"0" * 320 + b"}}",
    ],
)
def test_memories_with_non_json_numbers_are_refused_and_nothing_is_stored(
    gateway: RunningGateway, raw: bytes
) -> None:
    with gateway.client() as c:
        r = c.post("/v1/memories", content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 422, r.text
        batch = b'{"memories": [' + raw + b"]}"
        r = c.post(
            "/v1/memories/batch", content=batch, headers={"content-type": "application/json"}
        )
        assert r.status_code in (200, 422), r.text
        if r.status_code == 200:
            assert r.json()["results"][0]["error"]["status"] == 422
        assert c.get("/v1/memories").json()["count"] == 0
        assert c.post("/v1/memories/search", json={"query": "x"}).status_code == 200


def test_unicode_month_names_in_searches_answer(gateway: RunningGateway) -> None:
    with gateway.client() as c:
        for path in ("/v1/memories/search", "/v1/facts/search", "/v1/rag/context"):
            r = c.post(path, json={"query": "what happened in ſeptember 2022"})
            assert r.status_code == 200, (path, r.text)


@pytest.mark.parametrize("source", ["a.md ", "a\u202egpj.md", "a\u2028b.md", "\u200bx.md"])
def test_sources_that_would_spoof_a_citation_are_refused(
    gateway: RunningGateway, source: str
) -> None:
    with gateway.client() as c:
        r = c.post("/v1/docs", json={"source": source, "text": "hello"})
        assert r.status_code == 422, r.text


def test_helper_texts_are_bounded(gateway: RunningGateway) -> None:
    with gateway.client() as c:
        big = "1" * 300_000
        assert c.post("/v1/tokenize", json={"text": big}).status_code == 422
        assert c.post("/v1/chunk", json={"text": big}).status_code == 422
        ok = c.post("/v1/tokenize", json={"text": "hello world"})
        assert ok.status_code == 200 and ok.json()["count"] >= 2


def test_stop_sequences_are_bounded_on_every_generation_route(gateway: RunningGateway) -> None:
    """Each stop sequence is checked on every generated token: a body of a million of them
    (8 MiB) held the shared model for every tenant. Refused before any inference work."""
    from hivemind_common.text import MAX_STOP_CHARS, MAX_STOP_SEQUENCES
    from hivemind_inference.schemas import ChatRequest, CompletionRequest

    many = [f"z{i}" for i in range(MAX_STOP_SEQUENCES + 1)]
    long = "z" * (MAX_STOP_CHARS + 1)
    chat = [{"role": "user", "content": "write an essay"}]
    with gateway.client() as c:
        for stop in (many, long, [long]):
            for path, body in (
                ("/v1/chat/completions", {"model": "m", "messages": chat, "stop": stop}),
                ("/v1/completions", {"model": "m", "prompt": "an essay", "stop": stop}),
                ("/v1/messages", {"model": "m", "max_tokens": 8, "messages": chat,
                                  "stop_sequences": stop if isinstance(stop, list) else [stop]}),
            ):  # fmt: skip
                r = c.post(path, json=body)
                assert r.status_code in (400, 422), (path, r.status_code, r.text)
                assert "stop" in r.text, r.text
    for model in (ChatRequest, CompletionRequest):  # the inference service's own bodies
        for stop in (many, long):
            with pytest.raises(ValueError):
                model.model_validate({"messages": chat, "prompt": "x", "stop": stop})
        assert model.model_validate({"messages": chat, "stop": many[:4]}).stop == many[:4]


def test_bodies_of_millions_of_odd_items_are_one_error_not_millions(
    gateway: RunningGateway,
) -> None:
    """Each branch of a union (or each item before a list's length) was reported item by item:
    ~8 MiB of tags or embedding inputs held the event loop for seconds and took GiBs."""
    import pydantic

    from hivemind_gateway.memory.schemas import MemorySearch
    from hivemind_gateway.openai.schemas import CompletionBody, EmbeddingBody

    bodies = [
        (MemorySearch, {"query": "x", "tags": ["!"] * 200_000}),
        (EmbeddingBody, {"input": [""] * 100_000}),
        (CompletionBody, {"model": "m", "prompt": [1] + ["x"] * 100_000}),
        (CompletionBody, {"model": "m", "prompt": ["x"] * 100_000}),
    ]
    for model, body in bodies:
        with pytest.raises(pydantic.ValidationError) as err:
            model.model_validate(body)
        assert len(err.value.errors()) == 1, model
    # token ids of any shape stay the route's clear 400, without being read item by item
    assert EmbeddingBody.model_validate({"input": [[""] * 2000] * 100}).input == [0]
    with gateway.client() as c:
        r = c.post("/v1/embeddings", json={"input": [["x"] * 50] * 50, "model": "m"})
        assert r.status_code == 400 and "token ids" in r.text
    assert CompletionBody.model_validate({"model": "m", "prompt": [1, 2]}).prompt == [1, 2]
