"""The gateway's recent query vectors: per tenant and model, bounded, never stale."""

from __future__ import annotations

import httpx
import numpy as np
import orjson
import pytest

from hivemind_gateway.search.embedder import EmbeddingClient, QueryVectors


class _Service:
    """Answers /embed like the embedding service, counting the texts it was asked."""

    def __init__(self) -> None:
        self.model = "model-a"
        self.asked: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        texts = orjson.loads(request.content)["texts"]
        self.asked.extend(texts)
        rows = [[float(len(t)), float(len(self.asked)), 1.0] for t in texts]
        return httpx.Response(200, json={"embeddings": rows, "model": self.model})


def _client(service: _Service, **kwargs: int) -> EmbeddingClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(service), base_url="http://embed")
    return EmbeddingClient(http, **kwargs)


def _counted(result: str) -> float:
    from prometheus_client import REGISTRY

    value = REGISTRY.get_sample_value("hivemind_query_vector_cache_total", {"result": result})
    return value or 0.0


async def test_a_repeated_query_is_embedded_once_per_tenant() -> None:
    service = _Service()
    client = _client(service)
    hits, misses = _counted("hit"), _counted("miss")
    first = await client.embed_query("t1", "where does redis listen")
    again = await client.embed_query("t1", "where does redis listen")
    assert service.asked == ["where does redis listen"]
    assert np.array_equal(first, again)
    with pytest.raises(ValueError):
        again[0] = 0.0  # one row shared by every hit: nobody may change it
    await client.embed_query("t2", "where does redis listen")  # another tenant: its own entry
    assert service.asked == ["where does redis listen"] * 2
    assert client.queries.hits == 1
    assert (_counted("hit") - hits, _counted("miss") - misses) == (1, 2)


async def test_a_new_model_never_gets_the_old_models_vectors() -> None:
    service = _Service()
    client = _client(service)
    await client.embed_query("t1", "q")
    service.model = "model-b"
    await client.embed_one("something else")  # the service now answers with model-b
    assert client.model_id == "model-b"
    await client.embed_query("t1", "q")
    assert service.asked == ["q", "something else", "q"]


async def test_the_cache_is_bounded_per_tenant_and_can_be_off() -> None:
    service = _Service()
    client = _client(service, query_cache_per_tenant=2)
    for text in ("a", "b", "c", "a"):
        await client.embed_query("t", text)
    assert service.asked == ["a", "b", "c", "a"]  # "a" was dropped when "c" came
    assert client.queries.size("t") == 2
    for text in ("x", "y", "z"):  # another tenant's queries push out none of t's
        await client.embed_query("u", text)
    await client.embed_query("t", "a")
    assert service.asked[-1] == "z" and client.queries.size("t") == 2
    off = _client(_Service(), query_cache_per_tenant=0)
    await off.embed_query("t", "a")
    await off.embed_query("t", "a")
    assert off.queries.hits == 0


def test_lru_order_and_the_tenant_bound() -> None:
    cache = QueryVectors(per_tenant=2, tenants=2)
    for text in ("a", "b"):
        cache.put("t", "m", text, np.zeros(3, dtype=np.float32))
    assert cache.get("t", "m", "a") is not None  # "a" is now the most recent
    cache.put("t", "m", "c", np.zeros(3, dtype=np.float32))
    assert cache.get("t", "m", "b") is None
    assert cache.get("t", "m", "a") is not None
    assert cache.get("t", None, "a") is None  # no model known yet: nothing to hand out
    assert cache.get("t", "other-model", "a") is None
    cache.put("u", "m", "a", np.zeros(3, dtype=np.float32))
    cache.put("v", "m", "a", np.zeros(3, dtype=np.float32))  # a third tenant: t, least recent, goes
    assert cache.size("t") == 0 and cache.size("u") == 1 and cache.size("v") == 1
    cache.put("w", "m", "\ud800 lone surrogate", np.zeros(3, dtype=np.float32))  # any str keys
