"""Tenant A writes through every route that holds tenant data; tenant B reads, searches, deletes
and retrieves through the same routes, with its own keys of every role, and sees nothing of A."""

from __future__ import annotations

import json
from typing import Any

import httpx

from hivemind_common import keys

MARK = "zorblaxquint"  # a word both tenants use: B searches for it
# what only tenant A ever stores or asks: none of it may reach B
A_ONLY = ("portseventy", "ferrymark", "ferrytask", "ferrycontext", "onstaging", "tenant-a")
CHAT = [
    {"role": "user", "content": f"how do I deploy {MARK}?"},
    {"role": "assistant", "content": f"run make deploy-{MARK}"},
]


def _written_by_a(gateway: Any) -> dict[str, str]:
    """Everything tenant A stores; returns the ids B will go after."""
    with gateway.client("tenant-a", "write") as a:
        assert a.put(f"/v1/facts/{MARK}", json={"value": f"{MARK} is on portseventy"}).is_success
        session = a.post("/v1/sessions", json={"id": "shared-name", "task": "ferrytask"})
        assert session.status_code == 201, session.text
        context = {"context": "ferrycontext"}
        assert a.put("/v1/sessions/shared-name/context", json=context).is_success
        memory = a.post(
            "/v1/memories", json={"text": f"{MARK} ferrymark", "session_id": "shared-name"}
        )
        assert memory.status_code == 201, memory.text
        assert a.put("/v1/cache/grep/h1", json={"value": {"out": "ferrymark"}}).is_success
        assert a.post("/v1/rag/context", json={"query": f"where is {MARK} onstaging"}).is_success
        sample = a.post("/v1/learning/samples", json={"messages": CHAT, "source": "claude-code"})
        assert sample.status_code == 200, sample.text
    with gateway.client("tenant-a", "operator") as op:
        job = op.post("/v1/learning/train", json={}).json()["job_id"]
    return {"memory": memory.json()["id"], "job": job}


def _shows_nothing_of_a(resp: httpx.Response) -> None:
    leaked = [text for text in A_ONLY if text in resp.text]
    assert not leaked, (resp.request.url, leaked, resp.text[:500])


def test_tenant_b_sees_nothing_of_tenant_a_through_any_route(gateway: Any) -> None:
    ids = _written_by_a(gateway)
    for role in ("read", "write", "admin"):
        with gateway.client("tenant-b", role) as b:
            reads = [
                b.get(f"/v1/facts/{MARK}"),
                b.get("/v1/facts"),
                b.post("/v1/facts/search", json={"query": MARK}),
                b.get("/v1/sessions"),
                b.get("/v1/sessions/shared-name"),
                b.get(f"/v1/memories/{ids['memory']}"),
                b.get("/v1/memories"),
                b.get("/v1/memories", params={"session_id": "shared-name"}),
                b.post("/v1/memories/search", json={"query": MARK}),
                b.get("/v1/cache/grep/h1"),
                b.post("/v1/rag/context", json={"query": f"where is {MARK} running"}),
                b.post("/v1/rag/context", json={"query": "ferrymark portseventy ferrytask"}),
                b.get("/v1/rag/suggestions"),
                b.get("/v1/rag/stats"),
                b.get("/v1/learning/status"),
                b.get(f"/v1/learning/jobs/{ids['job']}"),
                b.get("/v1/models/versions"),
                b.get("/v1/stats"),
            ]
            for resp in reads:
                assert resp.status_code in (200, 404), (resp.request.url, resp.status_code)
                _shows_nothing_of_a(resp)
            assert b.get(f"/v1/facts/{MARK}").status_code == 404
            if role == "read":  # before B has written anything under the same names
                assert b.get("/v1/sessions/shared-name").status_code == 404
                assert b.get("/v1/cache/grep/h1").status_code == 404
            assert b.get(f"/v1/memories/{ids['memory']}").status_code == 404
            assert b.get(f"/v1/learning/jobs/{ids['job']}").status_code == 404
            assert b.get("/v1/rag/context").status_code in (404, 405)
            context = b.post("/v1/rag/context", json={"query": MARK}).json()
            assert context["items"] == []
            if role == "admin":
                listed = b.get("/v1/keys").json()["data"]
                assert {k["tenant"] for k in listed} == {"tenant-b"}
                a_keys = [k for k in _keys(gateway) if k[1] == "tenant-a"]
                assert all(b.delete(f"/v1/keys/{kid}").status_code == 404 for kid, _ in a_keys)
            if role != "read":
                # B's deletes and overwrites touch only B's own namespace
                assert b.delete(f"/v1/facts/{MARK}").status_code == 404
                assert b.delete(f"/v1/memories/{ids['memory']}").status_code == 404
                assert b.put("/v1/cache/grep/h1", json={"value": "b's"}).is_success
                assert b.get("/v1/cache/grep/h1").json()["value"] == "b's"
                put = b.put("/v1/sessions/shared-name/context", json={"context": "b"})
                assert put.status_code in (200, 404)
    with gateway.client("tenant-a", "read") as a:  # A's data is all still there, unchanged
        assert a.get(f"/v1/facts/{MARK}").status_code == 200
        assert a.get(f"/v1/memories/{ids['memory']}").status_code == 200
        assert a.get("/v1/cache/grep/h1").json()["value"] == {"out": "ferrymark"}
        assert a.get("/v1/sessions/shared-name").json()["context"] == "ferrycontext"
        assert a.get(f"/v1/learning/jobs/{ids['job']}").status_code == 200
        hits = a.post("/v1/facts/search", json={"query": MARK}).json()["data"]
        assert [h["key"] for h in hits] == [MARK]


def test_tenant_as_samples_stay_out_of_training_until_a_opts_in(gateway: Any) -> None:
    _written_by_a(gateway)
    import redis as sync_redis

    r = sync_redis.Redis.from_url(gateway.redis_url, decode_responses=True)
    try:
        [(_, fields)] = r.xrange(keys.learning_stream())
        sample = json.loads(fields["data"])
        assert (sample["tenant"], sample["source"]) == ("tenant-a", "claude-code")
        # tenant-a holds an operator key, so its own chats are shared; B never opted in
        assert r.hget(keys.tenant_settings("tenant-a"), "share_training") == "1"
        assert r.hget(keys.tenant_settings("tenant-b"), "share_training") is None
    finally:
        r.close()


def _keys(gateway: Any) -> list[tuple[str, str]]:
    import redis as sync_redis

    r = sync_redis.Redis.from_url(gateway.redis_url, decode_responses=True)
    try:
        return [
            (kid, r.hget(keys.api_key(kid), "tenant") or "")
            for kid in r.smembers(keys.api_keys_index())
        ]
    finally:
        r.close()


def test_tenant_as_facts_are_injected_into_as_chats_and_never_into_bs(
    redis_url: str, internal_token: str, data_dir: Any
) -> None:
    from support.embedding import shared_embedding_url
    from support.gateway import running_gateway
    from support.stub_inference import stub_inference
    from support.waiting import wait_until

    ask = {
        "model": "default",
        "messages": [{"role": "user", "content": f"which port does {MARK} listen on?"}],
        "temperature": 1,
    }
    with (
        stub_inference() as stub,
        running_gateway(
            redis_url,
            internal_token,
            data_dir,
            embedding_url=shared_embedding_url(internal_token),
            trainer_url="http://127.0.0.1:9",
            inference_url=stub.url,
        ) as gw,
    ):
        with gw.client("tenant-a", "write") as a:
            fact = {"value": f"{MARK} listens on portseventy"}
            assert a.put(f"/v1/facts/{MARK}", json=fact).is_success

            def injected_for_a() -> bool:
                assert a.post("/v1/chat/completions", json=ask).status_code == 200
                return "portseventy" in json.dumps(stub.chats[-1]["messages"])

            wait_until(injected_for_a, timeout=30, what="A's fact in A's own prompt")
        for role in ("read", "write", "admin"):
            with gw.client("tenant-b", role) as b:
                answer = b.post("/v1/chat/completions", json=ask)
                assert answer.status_code == 200, answer.text
                assert answer.headers.get("x-hivemind-rag-items") in (None, "0")
                sent = json.dumps(stub.chats[-1]["messages"])
                assert not [t for t in A_ONLY if t in sent], sent
                context = b.post("/v1/rag/context", json={"query": f"port of {MARK}"})
                assert context.json()["items"] == [] and "portseventy" not in context.text
        # inference keeps each tenant's prompt states apart (no prefix of A's prompt is resumed
        # for B: a timing side channel), told by a digest, never the tenant's name
        from hivemind_common.partition import partition_of

        b_chats = 3
        a_part, b_part = partition_of("tenant-a"), partition_of("tenant-b")
        assert stub.partitions[:-b_chats] and set(stub.partitions[:-b_chats]) == {a_part}
        assert stub.partitions[-b_chats:] == [b_part] * b_chats
        assert a_part != b_part and len(a_part) == 32 and "tenant" not in a_part
