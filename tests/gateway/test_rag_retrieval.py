"""Gated hybrid retrieval end to end: a real gateway, a real Redis, the real MiniLM service."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_sync

from hivemind_common import keys
from support.embedding import running_embedding, shared_embedding_url
from support.gateway import RunningGateway, running_gateway
from support.waiting import wait_until


@pytest.fixture
def rag_gateway(redis_url: str, internal_token: str, data_dir: Path) -> Iterator[RunningGateway]:
    """A gateway whose embedding service is the real shipped model."""
    with running_gateway(
        redis_url,
        internal_token,
        data_dir,
        embedding_url=shared_embedding_url(internal_token),
        inference_url="http://127.0.0.1:9",
        trainer_url="http://127.0.0.1:9",
    ) as gw:
        yield gw


FACTS = {
    "redis.port": "Redis for local development listens on port 6379",
    "editor": "The developer uses Neovim with the LazyVim distribution",
    "os": "The workstation runs Debian 12 bookworm",
    "style.rules": "Always answer in British English",
}


def _seed(c: object, pinned: bool = False) -> None:
    for key, value in FACTS.items():
        tags = ["pinned"] if pinned and key == "style.rules" else []
        r = c.put(f"/v1/facts/{key}", json={"value": value, "tags": tags})  # type: ignore[attr-defined]
        assert r.status_code == 200, r.text


def test_the_answering_fact_is_injected_and_labelled_good(rag_gateway: RunningGateway) -> None:
    with rag_gateway.client() as c:
        _seed(c)
        r = c.post("/v1/rag/context", json={"query": "which port is redis on?"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["quality"] == "good" and body["method"] == "hybrid"
        assert [i["key"] for i in body["items"]][:1] == ["redis.port"]
        assert "6379" in body["text"]
        assert "Neovim" not in body["text"]


def test_explain_shows_every_candidate_its_scores_and_the_gates_reasons(
    rag_gateway: RunningGateway,
) -> None:
    with rag_gateway.client() as c:
        _seed(c, pinned=True)
        plain = c.post("/v1/rag/context", json={"query": "which port is redis on?"}).json()
        assert "explain" not in plain  # the answer's shape is unchanged unless asked
        r = c.post("/v1/rag/context", json={"query": "which port is redis on?", "explain": True})
        assert r.status_code == 200, r.text
        body = r.json()
        ex = body["explain"]
        assert ex["injected_text"] == body["text"] == plain["text"]
        assert ex["embedded"] is True and "redi" in ex["query_terms"]
        assert ex["gate"]["inject_threshold"] > 0 and ex["budget_tokens"] == 512
        assert 0 < ex["used_tokens"] <= 512
        by_key = {cand["key"]: cand for cand in ex["candidates"]}
        assert set(FACTS) <= set(by_key)
        port = by_key["redis.port"]
        assert port["injected"] and port["passed"] and port["text"].startswith("redis.port: ")
        assert port["dense"] > by_key["os"]["dense"] and port["lexical"] > 0
        assert port["fused"] >= ex["gate"]["inject_threshold"] or "lead" in port["reason"]
        assert by_key["style.rules"]["pinned"] and by_key["style.rules"]["injected"]
        assert "pinned" in by_key["style.rules"]["reason"]
        out = by_key["os"]
        assert not out["injected"] and not out["passed"] and out["reason"]
        injected = {(i["kind"], i["key"]) for i in body["items"]}
        assert injected == {(x["kind"], x["key"]) for x in ex["candidates"] if x["injected"]}


def test_an_unrelated_query_injects_nothing(rag_gateway: RunningGateway) -> None:
    with rag_gateway.client() as c:
        _seed(c)
        body = c.post("/v1/rag/context", json={"query": "how do I bake sourdough bread"}).json()
        assert body["items"] == [] and body["text"] == ""
        assert body["quality"] in ("weak", "miss")


def test_pinned_facts_are_always_injected_and_do_not_change_the_label(
    rag_gateway: RunningGateway,
) -> None:
    with rag_gateway.client() as c:
        _seed(c, pinned=True)
        body = c.post("/v1/rag/context", json={"query": "what is the capital of Peru"}).json()
        assert [(i["key"], i["pinned"]) for i in body["items"]] == [("style.rules", True)]
        assert "British English" in body["text"]
        assert body["quality"] in ("weak", "miss")
        good = c.post("/v1/rag/context", json={"query": "what editor do I use"}).json()
        assert {i["key"] for i in good["items"]} == {"style.rules", "editor"}
        assert good["quality"] == "good"


def test_the_token_budget_bounds_the_block(rag_gateway: RunningGateway) -> None:
    with rag_gateway.client() as c:
        c.put("/v1/facts/long", json={"value": "redis tuning notes: " + "maxmemory policy " * 200})
        body = c.post("/v1/rag/context", json={"query": "redis tuning notes", "budget_tokens": 40})
        body = body.json()
        assert body["text"] and len(body["text"]) // 4 <= 41


def test_vectors_are_stored_under_the_model_id(rag_gateway: RunningGateway) -> None:
    raw = redis_sync.Redis.from_url(rag_gateway.redis_url)
    with rag_gateway.client() as c:
        c.put("/v1/facts/os", json={"value": "Debian 12"}).raise_for_status()
        made = c.post("/v1/memories", json={"text": "upgraded the kernel"}).json()
    assert len(raw.get(keys.vector("acme", "all-MiniLM-L6-v2", "fact", "os")) or b"") == 384 * 4
    # a memory's vector is added by the index's worker, not by the write
    memory_vector = keys.vector("acme", "all-MiniLM-L6-v2", "memory", made["id"])
    wait_until(lambda: raw.exists(memory_vector), what="the memory's vector")


def test_semantic_search_finds_paraphrases(rag_gateway: RunningGateway) -> None:
    with rag_gateway.client() as c:
        _seed(c)
        c.post("/v1/memories", json={"text": "fixed the flaky CI job by pinning pytest"})
        facts = c.post("/v1/facts/search", json={"query": "which linux distro"}).json()
        assert facts["method"] == "hybrid" and facts["data"][0]["key"] == "os"

        def found_by_meaning() -> bool:  # once the index's worker has embedded it
            body = {"query": "unstable continuous integration"}
            data = c.post("/v1/memories/search", json=body).json()["data"]
            return bool(data) and data[0]["text"].startswith("fixed the flaky CI job")

        wait_until(found_by_meaning, timeout=10, what="the memory found by meaning")


def test_a_second_gateway_sees_a_write_within_a_second(
    rag_gateway: RunningGateway, internal_token: str, data_dir: Path
) -> None:
    with running_gateway(
        rag_gateway.redis_url,
        internal_token,
        data_dir,
        embedding_url=shared_embedding_url(internal_token),
    ) as second:
        key = rag_gateway.key()
        second.keys[("acme", "write")] = key
        with rag_gateway.client() as a, second.client() as b:
            b.post("/v1/facts/search", json={"query": "warm up"}).raise_for_status()
            a.put("/v1/facts/gpu", json={"value": "RTX 3090 with 24 GB VRAM"}).raise_for_status()

            def seen() -> bool:
                hits = b.post("/v1/facts/search", json={"query": "graphics card memory"}).json()
                return any(h["key"] == "gpu" for h in hits["data"])

            wait_until(seen, timeout=10.0, interval=0.02, what="the fact on the second gateway")
            a.delete("/v1/facts/gpu")

            def gone() -> bool:
                hits = b.post("/v1/facts/search", json={"query": "graphics card memory"}).json()
                return all(h["key"] != "gpu" for h in hits["data"])

            wait_until(gone, timeout=10.0, interval=0.02, what="the delete on the second gateway")


def test_retrieval_falls_back_to_lexical_when_the_embedding_service_stops(
    redis_url: str, internal_token: str, data_dir: Path
) -> None:
    embedding = running_embedding(internal_token)
    emb_url = embedding.__enter__()
    with (
        running_gateway(
            redis_url, internal_token, data_dir, embedding_url=emb_url, embedding_timeout_s=2.0
        ) as gw,
        gw.client() as c,
    ):
        try:
            _seed(c)
        finally:
            embedding.__exit__(None, None, None)  # the embedding service stops here
        r = c.post("/v1/rag/context", json={"query": "redis port 6379"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["quality"] == "fallback" and body["method"] == "lexical"
        assert [i["key"] for i in body["items"]] == ["redis.port"]
        none = c.post("/v1/rag/context", json={"query": "sourdough bread recipe"}).json()
        assert none["quality"] == "fallback" and none["items"] == []
        put = c.put("/v1/facts/new", json={"value": "written while embeddings are down"})
        assert put.status_code == 200
        hits = c.post("/v1/facts/search", json={"query": "written while down"}).json()
        assert hits["method"] == "lexical" and hits["data"][0]["key"] == "new"
        stats = c.get("/v1/rag/stats").json()
        assert stats["counters"]["quality:fallback"] == 2
        assert stats["embedding_available"] is False


def test_suggestions_name_topics_that_missed_queries_asked_about(
    rag_gateway: RunningGateway,
) -> None:
    with rag_gateway.client() as c:
        _seed(c)
        for q in ("kubernetes namespace for staging", "which kubernetes cluster", "redis port"):
            c.post("/v1/rag/context", json={"query": q}).raise_for_status()
        body = c.get("/v1/rag/suggestions").json()
        topics = {s["topic"]: s for s in body["data"]}
        assert topics["kubernetes"]["queries"] == 2
        assert "redis" not in topics and "port" not in topics
        stats = c.get("/v1/rag/stats").json()
        assert stats["counters"]["total"] == 3 and stats["logged"] == 3
        assert stats["index"]["fact"] == len(FACTS)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"query": ""},
        {"query": ["x"]},
        {"query": "x", "budget_tokens": 0},
        {"query": "x", "budget_tokens": "9"},
        {"query": "x", "unknown": 1},
        {"query": "x", "explain": "yes"},
        {"query": "x", "explain": 1},
    ],
)
def test_bad_retrieval_requests_are_refused(
    rag_gateway: RunningGateway, body: dict[str, object]
) -> None:
    with rag_gateway.client() as c:
        r = c.post("/v1/rag/context", json=body)
        assert r.status_code == 422, r.text


def test_a_ten_megabyte_query_is_refused_before_any_work(rag_gateway: RunningGateway) -> None:
    with rag_gateway.client() as c:
        r = c.post("/v1/rag/context", json={"query": "x" * 10_000_000})
        assert r.status_code == 413
        assert c.get("/v1/rag/stats").json()["logged"] == 0


def test_a_query_with_a_lone_surrogate_is_refused(rag_gateway: RunningGateway) -> None:
    with rag_gateway.client() as c:
        raw = '{"query": "broken \\ud800 text"}'
        r = c.post("/v1/rag/context", content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 422, r.text


def test_facts_written_while_embeddings_were_down_are_embedded_when_they_return(
    redis_url: str, internal_token: str, data_dir: Path
) -> None:
    from support.waiting import free_port

    port = free_port()
    raw = redis_sync.Redis.from_url(redis_url)
    vector_key = keys.vector("acme", "all-MiniLM-L6-v2", "fact", "redis.port")
    with (
        running_gateway(
            redis_url,
            internal_token,
            data_dir,
            embedding_url=f"http://127.0.0.1:{port}",
            embedding_retry_after_s=0.2,
        ) as gw,
        gw.client() as c,
    ):
        _seed(c)
        assert c.post("/v1/rag/context", json={"query": "x"}).json()["quality"] == "fallback"
        with running_embedding(internal_token, port=port):
            wait_until(lambda: raw.exists(vector_key), timeout=30, what="the backfilled vector")

            def hybrid_good() -> bool:
                body = c.post("/v1/rag/context", json={"query": "which port is redis on"}).json()
                return body["quality"] == "good" and body["items"][0]["key"] == "redis.port"

            wait_until(hybrid_good, timeout=30, what="hybrid retrieval after the backfill")


def test_changing_the_embedding_model_never_mixes_vector_spaces(
    redis_url: str, internal_token: str, data_dir: Path
) -> None:
    from support.waiting import free_port

    port = free_port()
    raw = redis_sync.Redis.from_url(redis_url)
    with (
        running_gateway(
            redis_url,
            internal_token,
            data_dir,
            embedding_url=f"http://127.0.0.1:{port}",
            embedding_retry_after_s=0.2,
        ) as gw,
        gw.client() as c,
    ):
        with running_embedding(internal_token, port=port, embedding_model_id="model-a"):
            _seed(c)
            # stored at once, or backfilled if the gateway still held the service for down
            old_key = keys.vector("acme", "model-a", "fact", "redis.port")
            wait_until(lambda: raw.exists(old_key), timeout=30, what="model-a vectors")
            assert c.get("/v1/rag/stats").json()["embedding_model"] == "model-a"
        # the same gateway now meets another model behind the same URL
        with running_embedding(internal_token, port=port, embedding_model_id="model-b"):
            new_key = keys.vector("acme", "model-b", "fact", "redis.port")

            def switched() -> bool:
                c.post("/v1/rag/context", json={"query": "which port is redis on"})
                return bool(raw.exists(new_key))

            wait_until(switched, timeout=30, what="model-b vectors")
            body = c.post("/v1/rag/context", json={"query": "which port is redis on"}).json()
            assert body["quality"] == "good" and body["items"][0]["key"] == "redis.port"
            assert c.get("/v1/rag/stats").json()["embedding_model"] == "model-b"
    # the old model's vectors stay under their own id; nothing was overwritten
    assert raw.exists(keys.vector("acme", "model-a", "fact", "redis.port"))


def test_a_repeated_query_is_served_from_recent_vectors_even_with_embeddings_down(
    redis_url: str, internal_token: str, data_dir: Path
) -> None:
    """Every search route embeds its query once per tenant: a repeat (an agent's loop re-sends
    its last user message with each tool result) needs no embedding call, and still searches by
    meaning while the embedding service is away; a new query falls back to lexical."""
    embedding = running_embedding(internal_token)
    emb_url = embedding.__enter__()
    question = {"query": "which port is redis on?"}
    with (
        running_gateway(
            redis_url, internal_token, data_dir, embedding_url=emb_url, embedding_timeout_s=2.0
        ) as gw,
        gw.client() as c,
        gw.client(tenant="other") as other,
    ):
        queries = gw.app.state.gateway.search.embedder.queries
        try:
            _seed(c)
            first = c.post("/v1/rag/context", json=question).json()
            assert first["method"] == "hybrid" and first["items"][0]["key"] == "redis.port"
            misses = queries.misses
            assert c.post("/v1/facts/search", json=question).json()["method"] == "hybrid"
            assert c.post("/v1/memories/search", json=question).status_code == 200
            assert queries.misses == misses and queries.hits >= 2
            assert other.post("/v1/rag/context", json=question).status_code == 200
            assert queries.misses == misses + 1  # another tenant embeds its own
        finally:
            embedding.__exit__(None, None, None)  # the embedding service stops here
        again = c.post("/v1/rag/context", json=question).json()
        assert again["method"] == "hybrid" and again["items"] == first["items"]
        new = c.post("/v1/rag/context", json={"query": "redis port number"}).json()
        assert new["method"] == "lexical"
