"""Memories: store, read, list, delete, search with session and tag filters, validation."""

from __future__ import annotations

import pytest

from support.gateway import RunningGateway


def test_a_memory_round_trips_with_its_metadata(gateway: RunningGateway) -> None:
    with gateway.client() as c:
        body = {
            "text": "the flaky test was caused by a shared tmp dir",
            "session_id": "s1",
            "tags": ["debugging", "tests"],
            "metadata": {"file": "tests/test_x.py", "line": 12, "nested": {"ok": [1, 2]}},
        }
        r = c.post("/v1/memories", json=body)
        assert r.status_code == 201, r.text
        made = r.json()
        got = c.get(f"/v1/memories/{made['id']}").json()
        assert got == made
        assert got["metadata"]["nested"] == {"ok": [1, 2]}
        assert c.get("/v1/sessions/s1").json()["memories"] == 1
        assert c.delete(f"/v1/memories/{made['id']}").status_code == 204
        assert c.get(f"/v1/memories/{made['id']}").status_code == 404
        assert c.get("/v1/sessions/s1").json()["memories"] == 0


def test_memories_are_listed_newest_first_per_session(gateway: RunningGateway) -> None:
    with gateway.client() as c:
        ids = [
            c.post(
                "/v1/memories", json={"text": f"note {i}", "session_id": "a" if i % 2 else "b"}
            ).json()["id"]
            for i in range(6)
        ]
        page = c.get("/v1/memories", params={"session_id": "a", "limit": 2}).json()
        assert page["count"] == 3
        rest = c.get(
            "/v1/memories", params={"session_id": "a", "limit": 2, "cursor": page["next_cursor"]}
        ).json()
        assert [m["id"] for m in page["data"] + rest["data"]] == [ids[5], ids[3], ids[1]]
        assert c.get("/v1/memories").json()["count"] == 6


def test_paging_neither_repeats_nor_skips_while_memories_are_added(
    gateway: RunningGateway,
) -> None:
    with gateway.client() as c:
        made = [c.post("/v1/memories", json={"text": f"old {i}"}).json()["id"] for i in range(7)]
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, object] = {"limit": 3}
            if cursor:
                params["cursor"] = cursor
            page = c.get("/v1/memories", params=params).json()
            seen += [m["id"] for m in page["data"]]
            # a newer memory lands on top between pages: an offset would repeat one
            c.post("/v1/memories", json={"text": "newer"}).raise_for_status()
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == made[::-1]


@pytest.mark.parametrize("cursor", ["12", "abc", "1.5:", "1.5:../x", "x" * 300])
def test_a_cursor_the_api_did_not_give_out_is_refused(gateway: RunningGateway, cursor: str) -> None:
    with gateway.client() as c:
        assert c.get("/v1/memories", params={"cursor": cursor}).status_code == 422
        assert c.get("/v1/sessions", params={"cursor": cursor}).status_code == 422


def test_memory_search_filters_by_session_and_every_tag(gateway: RunningGateway) -> None:
    with gateway.client() as c:
        c.post(
            "/v1/memories",
            json={"text": "docker build cache fix", "session_id": "x", "tags": ["docker", "ci"]},
        )
        c.post(
            "/v1/memories",
            json={"text": "docker compose network fix", "session_id": "y", "tags": ["docker"]},
        )
        c.post("/v1/memories", json={"text": "python venv fix", "session_id": "x"})

        def keys_for(body: dict[str, object]) -> set[str]:
            r = c.post("/v1/memories/search", json=body)
            assert r.status_code == 200, r.text
            return {m["text"] for m in r.json()["data"]}

        assert keys_for({"query": "docker fix", "session_id": "y"}) == {
            "docker compose network fix"
        }
        assert keys_for({"query": "docker fix", "tags": ["docker", "ci"]}) == {
            "docker build cache fix"
        }
        assert "python venv fix" in keys_for({"query": "venv fix", "session_id": "x"})


def test_memories_belong_to_one_tenant(gateway: RunningGateway) -> None:
    with gateway.client("acme") as a, gateway.client("globex") as b:
        made = a.post("/v1/memories", json={"text": "acme's private memory"}).json()
        assert b.get(f"/v1/memories/{made['id']}").status_code == 404
        assert b.delete(f"/v1/memories/{made['id']}").status_code == 404
        assert b.post("/v1/memories/search", json={"query": "private memory"}).json()["data"] == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"text": ""},
        {"text": 42},
        {"text": "x", "session_id": "bad id"},
        {"text": "x", "tags": [1]},
        {"text": "x", "metadata": []},
        {"text": "x", "metadata": {"k": "v" * 20_000}},
        {"text": "x", "other": True},
        {"text": "bell \x07"},
        {"text": "y" * 70_000},
    ],
)
def test_bad_memories_are_refused_and_nothing_is_stored(
    gateway: RunningGateway, body: dict[str, object]
) -> None:
    with gateway.client() as c:
        r = c.post("/v1/memories", json=body)
        assert 400 <= r.status_code < 500, r.text
        assert c.get("/v1/memories").json()["count"] == 0
