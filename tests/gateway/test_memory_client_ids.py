"""Memories with ids the client chose (a body ``id`` or an ``Idempotency-Key`` header): a retried
write is stored once, a different memory under a used id is a 409."""

from __future__ import annotations

import asyncio
import hashlib

import httpx
import pytest

from support.gateway import RunningGateway


def test_a_memory_written_twice_with_its_id_is_stored_once(gateway: RunningGateway) -> None:
    body = {"id": "note-1", "text": "the deploy key rotates monthly", "session_id": "s1"}
    with gateway.client() as c:
        first = c.post("/v1/memories", json=body)
        assert first.status_code == 201, first.text
        again = c.post("/v1/memories", json=body)
        assert again.status_code == 201, again.text
        assert again.json() == first.json()  # the stored memory, created_at unchanged
        assert first.json()["id"] == "note-1"
        assert c.get("/v1/memories").json()["count"] == 1
        assert c.get("/v1/sessions/s1").json()["memories"] == 1


def test_another_memory_under_a_used_id_is_a_conflict(gateway: RunningGateway) -> None:
    with gateway.client() as c:
        c.post("/v1/memories", json={"id": "n", "text": "one"}).raise_for_status()
        clash = c.post("/v1/memories", json={"id": "n", "text": "two"})
        assert clash.status_code == 409
        assert clash.headers["content-type"].startswith("application/problem+json")
        assert c.get("/v1/memories/n").json()["text"] == "one"


def test_an_idempotency_key_names_one_memory(gateway: RunningGateway) -> None:
    headers = {"Idempotency-Key": "import-2024-05-01#17"}
    with gateway.client() as c, gateway.client("other") as o:
        first = c.post("/v1/memories", json={"text": "kept once"}, headers=headers)
        assert first.status_code == 201, first.text
        memory_id = first.json()["id"]
        assert memory_id == hashlib.sha256(b"import-2024-05-01#17").hexdigest()[:24]
        again = c.post("/v1/memories", json={"text": "kept once"}, headers=headers)
        assert again.json() == first.json()
        assert c.get("/v1/memories").json()["count"] == 1
        # the same key in another tenant is another tenant's memory
        theirs = o.post("/v1/memories", json={"text": "theirs"}, headers=headers)
        assert theirs.status_code == 201
        assert c.get(f"/v1/memories/{memory_id}").json()["text"] == "kept once"


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        ({"text": "x", "id": "bad id"}, {}),
        ({"text": "x", "id": ""}, {}),
        ({"text": "x"}, {"Idempotency-Key": "has space"}),
        ({"text": "x"}, {"Idempotency-Key": "k" * 256}),
        ({"text": "x", "id": "other"}, {"Idempotency-Key": "k1"}),
    ],
)
def test_bad_client_ids_are_refused(
    gateway: RunningGateway, body: dict[str, str], headers: dict[str, str]
) -> None:
    with gateway.client() as c:
        r = c.post("/v1/memories", json=body, headers=headers)
        assert 400 <= r.status_code < 500 and r.status_code != 404, r.text
        assert c.get("/v1/memories").json()["count"] == 0


def test_a_batch_keeps_the_ids_it_is_given(gateway: RunningGateway) -> None:
    items = [{"id": "b1", "text": "first"}, {"text": "second"}]
    with gateway.client() as c:
        done = c.post("/v1/memories/batch", json={"memories": items}).json()
        assert done["stored"] == 2
        assert done["results"][0]["id"] == "b1"
        again = c.post("/v1/memories/batch", json={"memories": items[:1]}).json()
        assert again["results"][0]["id"] == "b1"
        assert c.get("/v1/memories").json()["count"] == 2


def test_a_batch_refuses_another_memory_under_a_used_id_and_a_repeated_id(
    gateway: RunningGateway,
) -> None:
    with gateway.client() as c:
        assert (
            c.post("/v1/memories", json={"id": "kept", "text": "the original"}).status_code == 201
        )
        items = [
            {"id": "kept", "text": "an overwrite"},  # another memory under a used id: 409
            {"id": "twice", "text": "one"},
            {"id": "twice", "text": "two"},  # the same id twice in one batch: the later refused
        ]
        done = c.post("/v1/memories/batch", json={"memories": items}).json()
        errors = [r["error"] for r in done["results"]]
        assert errors[0]["status"] == 409 and errors[0]["param"] == "id"
        assert errors[1] is None and errors[2]["status"] == 409
        assert done["stored"] == 1 and done["failed"] == 2
        # the same memory again under its id: answered with the id, stored once
        again = c.post(
            "/v1/memories/batch", json={"memories": [{"id": "kept", "text": "the original"}]}
        )
        assert again.json()["results"][0] == {"index": 0, "id": "kept", "error": None}
        assert c.get("/v1/memories/kept").json()["text"] == "the original"
        assert c.get("/v1/memories/twice").json()["text"] == "one"
        assert c.get("/v1/memories").json()["count"] == 2  # nothing counted twice


def _race(gateway: RunningGateway, requests: list[tuple[str, str, dict]]) -> list[httpx.Response]:
    """Send ``requests`` (method, path, body) at once, each on its own connection."""

    headers = {"Authorization": f"Bearer {gateway.key()}"}

    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=gateway.url, headers=headers, timeout=60) as c:
            return list(await asyncio.gather(*(c.request(m, p, json=b) for m, p, b in requests)))

    return asyncio.run(go())


def test_concurrent_writes_of_different_memories_under_one_id_store_exactly_one(
    gateway: RunningGateway,
) -> None:
    """Many requests write different bodies under one id at the same moment: exactly one wins
    and the memory stored is the one its answer names (before the write claims, every request
    found the id free and the last write silently replaced the others' answered memories)."""
    with gateway.client() as c:
        for round_ in range(5):
            memory_id = f"race-{round_}"
            bodies = [{"id": memory_id, "text": f"version {n}"} for n in range(12)]
            answers = _race(gateway, [("POST", "/v1/memories", b) for b in bodies])
            won = [a for a in answers if a.status_code == 201]
            assert len(won) == 1, [a.status_code for a in answers]
            assert {a.status_code for a in answers} == {201, 409}
            assert c.get(f"/v1/memories/{memory_id}").json()["text"] == won[0].json()["text"]
            # the claim is gone once the write is done: the same body again is a retry
            again = c.post("/v1/memories", json={"id": memory_id, "text": won[0].json()["text"]})
            assert again.status_code == 201
        assert c.get("/v1/memories").json()["count"] == 5


def test_concurrent_identical_writes_under_one_id_all_succeed_once(
    gateway: RunningGateway,
) -> None:
    body = {"id": "same", "text": "retried at once", "session_id": "s"}
    answers = _race(gateway, [("POST", "/v1/memories", body)] * 8)
    assert [a.status_code for a in answers] == [201] * 8
    with gateway.client() as c:
        assert c.get("/v1/memories").json()["count"] == 1


def test_concurrent_batches_under_the_same_ids_keep_one_body_each(
    gateway: RunningGateway,
) -> None:
    ids = [f"b{n}" for n in range(20)]
    batches = [
        {"memories": [{"id": i, "text": f"{i} from batch {k}"} for i in ids]} for k in range(4)
    ]
    answers = _race(gateway, [("POST", "/v1/memories/batch", b) for b in batches])
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    winners: dict[str, list[int]] = {i: [] for i in ids}
    for k, a in enumerate(answers):
        for r in a.json()["results"]:
            if r["error"] is None:
                winners[ids[r["index"]]].append(k)
            else:
                assert r["error"]["status"] == 409
    with gateway.client() as c:
        for i in ids:
            assert len(winners[i]) == 1, (i, winners[i])
            text = c.get(f"/v1/memories/{i}").json()["text"]
            assert text == f"{i} from batch {winners[i][0]}"
        assert c.get("/v1/memories").json()["count"] == len(ids)
