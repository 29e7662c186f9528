"""A delete removes an item's vectors in every embedding model's space, not only the serving
model's: vectors of a model used before are found through the tenant's set of models (written
with each vector, and filled once by a scan for vectors stored before the set existed)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import redis as redis_sync

from hivemind_common import keys
from hivemind_common.redis import connect_redis
from hivemind_gateway.migrations import VECTOR_MODELS, record_vector_models
from support.embedding import shared_embedding_url
from support.gateway import RunningGateway, running_gateway
from support.waiting import wait_until

MODEL = "all-MiniLM-L6-v2"
OLD = "old-model-v1"  # an embedding model the tenant used before the serving one


def test_vector_keys_parse_back_to_their_tenant_and_model() -> None:
    key = keys.vector("acme", MODEL, "doc", "d1.c2")
    assert keys.parse_vector(key) == ("acme", MODEL)
    assert keys.parse_vector(keys.fact("acme", "a.b")) is None
    assert keys.parse_vector("hm:{t:acme}:vec:") is None
    assert keys.parse_vector("other:{t:acme}:vec:m:fact:x") is None


def _record(url: str) -> int:
    async def run() -> int:
        client = connect_redis(url)
        try:
            return await record_vector_models(client)
        finally:
            await client.aclose()

    return asyncio.run(run())


def _vectors(raw: redis_sync.Redis, model: str, kind: str) -> set[str]:
    pattern = keys.vector("acme", model, kind, "*")
    return {k.decode().rsplit(":", 1)[1] for k in raw.scan_iter(match=pattern)}


def test_deletes_and_rewrites_drop_the_vectors_of_every_model(
    gateway: RunningGateway, internal_token: str, data_dir: Path
) -> None:
    raw = redis_sync.Redis.from_url(gateway.redis_url)
    with running_gateway(
        gateway.redis_url,
        internal_token,
        data_dir,
        embedding_url=shared_embedding_url(internal_token),
    ) as gw:
        gw.keys[("acme", "write")] = gateway.key()
        with gw.client() as c:
            assert c.put("/v1/facts/nas.ip", json={"value": "10.0.0.5"}).status_code == 200
            assert c.put("/v1/facts/nas.os", json={"value": "TrueNAS"}).status_code == 200
            mem = c.post("/v1/memories", json={"text": "moved the backups to the NAS"}).json()
            doc = c.post(
                "/v1/docs", json={"source": "notes/nas.md", "text": "# NAS\n\nBackups at 2 am.\n"}
            ).json()["data"][0]

            def embedded() -> bool:
                return bool(c.get("/v1/rag/stats").json()["pending_vectors"] == 0)

            wait_until(embedded, timeout=60, what="every item embedded")
            chunks = _vectors(raw, MODEL, "doc")
            assert chunks and mem["id"] in _vectors(raw, MODEL, "memory")
            # each write recorded its model, the fact's write and the worker's alike
            assert raw.smembers(keys.vector_models("acme")) == {MODEL.encode()}

            # vectors an earlier embedding model left, stored before the set of models existed
            vec = b"\0" * 16
            for kind, ids in (("fact", ["nas.ip", "nas.os"]), ("memory", [mem["id"]])):
                for item_id in ids:
                    raw.set(keys.vector("acme", OLD, kind, item_id), vec)
            for cid in chunks:
                raw.set(keys.vector("acme", OLD, "doc", cid), vec)
            raw.delete(keys.migration_done(VECTOR_MODELS))
            assert _record(gateway.redis_url) >= 2  # (acme, MODEL), (acme, OLD), any others
            assert raw.smembers(keys.vector_models("acme")) == {MODEL.encode(), OLD.encode()}
            assert _record(gateway.redis_url) == 0  # once

            # a rewrite: the chunks it removes lose their vectors in both spaces
            rewritten = c.post(
                "/v1/docs", json={"source": "notes/nas.md", "text": "# NAS\n\nBackups at 3 am.\n"}
            ).json()["data"][0]
            assert rewritten["id"] == doc["id"] and rewritten["status"] == "updated"
            for model in (MODEL, OLD):
                assert not chunks & _vectors(raw, model, "doc")

            assert c.delete("/v1/facts/nas.ip").status_code == 204
            assert c.delete(f"/v1/memories/{mem['id']}").status_code == 204
            assert c.delete(f"/v1/docs/{doc['id']}").status_code == 204
            for model in (MODEL, OLD):
                assert "nas.ip" not in _vectors(raw, model, "fact")
                assert not _vectors(raw, model, "memory")
                assert not _vectors(raw, model, "doc")

            # a new value: the old model's vector of the old value goes, the serving one is new
            assert c.put("/v1/facts/nas.os", json={"value": "Debian 12"}).status_code == 200
            assert _vectors(raw, OLD, "fact") == set()
            wait_until(  # embedded at once, or by the worker if the service was slow to answer
                lambda: _vectors(raw, MODEL, "fact") == {"nas.os"}, timeout=60, what="new vector"
            )


def test_a_document_of_thousands_of_chunks_is_deleted_in_every_space(
    gateway: RunningGateway,
) -> None:
    # two models in the set: each chunk's vector is dropped in both (one DEL per key; a single
    # DEL naming every key overflowed the Lua stack of the script that writes documents)
    raw = redis_sync.Redis.from_url(gateway.redis_url)
    raw.sadd(keys.vector_models("acme"), MODEL, OLD)
    text = "\n\n".join(f"Paragraph {i} says where backup {i} went." for i in range(4800))
    with gateway.client() as c:
        r = c.post(
            "/v1/docs",
            json={"source": "big.txt", "text": text, "chunk_tokens": 16, "overlap_tokens": 0},
        )
        assert r.status_code == 200, r.text
        doc = r.json()["data"][0]
        assert doc["chunks"] >= 8500
        some = sorted(
            k.decode().rsplit(":", 1)[1]
            for k in raw.scan_iter(match=keys.doc_chunk("acme", "*"), count=1000)
        )[:50]
        for cid in some:
            raw.set(keys.vector("acme", OLD, "doc", cid), b"\0" * 16)
        assert c.delete(f"/v1/docs/{doc['id']}").status_code == 204
        assert c.get(f"/v1/docs/{doc['id']}").status_code == 404
    assert not _vectors(raw, OLD, "doc")
