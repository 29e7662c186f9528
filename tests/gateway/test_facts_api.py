"""The facts API: CRUD, paging, search and validation against a real Redis."""

from __future__ import annotations

import json

import pytest

from support.gateway import RunningGateway


def test_a_fact_round_trips_and_keeps_its_creation_time(gateway: RunningGateway) -> None:
    with gateway.client() as c:
        r = c.put("/v1/facts/editor.theme", json={"value": "solarized dark", "tags": ["ui"]})
        assert r.status_code == 200, r.text
        first = r.json()
        assert first["key"] == "editor.theme" and first["tags"] == ["ui"]
        r = c.put("/v1/facts/editor.theme", json={"value": "gruvbox"})
        second = r.json()
        assert second["value"] == "gruvbox" and second["tags"] == []
        assert second["created_at"] == first["created_at"]
        assert second["updated_at"] >= first["updated_at"]
        got = c.get("/v1/facts/editor.theme").json()
        assert got["value"] == "gruvbox"
        assert c.delete("/v1/facts/editor.theme").status_code == 204
        assert c.get("/v1/facts/editor.theme").status_code == 404
        assert c.delete("/v1/facts/editor.theme").status_code == 404


def test_facts_are_listed_in_pages_that_cover_every_key_once(gateway: RunningGateway) -> None:
    with gateway.client() as c:
        for i in range(23):
            c.put(f"/v1/facts/k{i:02d}", json={"value": f"value {i}"}).raise_for_status()
        c.put("/v1/facts/other", json={"value": "x"}).raise_for_status()
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": 5, "prefix": "k"} | ({"cursor": cursor} if cursor else {})
            page = c.get("/v1/facts", params=params).json()
            assert page["count"] == 23
            seen += [f["key"] for f in page["data"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == [f"k{i:02d}" for i in range(23)]
        assert c.get("/v1/facts", params={"limit": 100}).json()["count"] == 24


def test_tenants_never_see_each_others_facts(gateway: RunningGateway) -> None:
    with gateway.client("acme") as a, gateway.client("globex") as b:
        a.put("/v1/facts/secret", json={"value": "acme's database password lives in vault"})
        assert b.get("/v1/facts/secret").status_code == 404
        assert b.get("/v1/facts").json()["count"] == 0
        hits = b.post("/v1/facts/search", json={"query": "database password vault"}).json()
        assert hits["data"] == []
        assert a.get("/v1/facts/secret").status_code == 200


def test_a_read_key_can_read_but_not_write(gateway: RunningGateway) -> None:
    with gateway.client("acme", "write") as w, gateway.client("acme", "read") as r:
        w.put("/v1/facts/os", json={"value": "debian 12"}).raise_for_status()
        assert r.get("/v1/facts/os").status_code == 200
        assert r.put("/v1/facts/os", json={"value": "arch"}).status_code == 403
        assert r.delete("/v1/facts/os").status_code == 403
    with gateway.client() as c:
        c.headers.pop("Authorization")
        assert c.get("/v1/facts/os").status_code == 401


def test_lexical_search_works_without_an_embedding_service(gateway: RunningGateway) -> None:
    with gateway.client() as c:
        c.put("/v1/facts/db.port", json={"value": "postgres listens on port 5432"})
        c.put("/v1/facts/shell", json={"value": "zsh with oh-my-zsh"})
        body = c.post("/v1/facts/search", json={"query": "postgres port", "top_k": 3}).json()
        assert body["method"] == "lexical"
        assert body["data"][0]["key"] == "db.port"
        assert body["data"][0]["value"] == "postgres listens on port 5432"


BAD_PUTS = [
    ({"value": ""}, "empty"),
    ({"value": "   "}, "blank"),
    ({"value": 12}, "number"),
    ({"value": None}, "null"),
    ({"value": ["a"]}, "list"),
    ({"value": "x", "unknown": 1}, "unknown field"),
    ({"value": "x", "tags": "pinned"}, "tags not a list"),
    ({"value": "x", "tags": ["has space"]}, "bad tag"),
    ({"value": "x", "tags": [f"t{i}" for i in range(40)]}, "too many tags"),
    ({"value": "nul\x00inside"}, "nul"),
    ({"value": "x" * 70_000}, "over the value limit"),
    ({}, "missing value"),
]


@pytest.mark.parametrize(("body", "why"), BAD_PUTS, ids=[w for _, w in BAD_PUTS])
def test_bad_fact_bodies_are_refused_and_store_nothing(
    gateway: RunningGateway, body: dict[str, object], why: str
) -> None:
    with gateway.client() as c:
        r = c.put("/v1/facts/target", json=body)
        assert 400 <= r.status_code < 500, (why, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert c.get("/v1/facts/target").status_code == 404


def test_ten_megabyte_values_and_lone_surrogates_are_refused(gateway: RunningGateway) -> None:
    with gateway.client() as c:
        r = c.put("/v1/facts/big", json={"value": "x" * 10_000_000})
        assert r.status_code == 413
        raw = '{"value": "broken \\ud800 surrogate"}'
        r = c.put("/v1/facts/odd", content=raw, headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500
        r = c.put(
            "/v1/facts/odd", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert 400 <= r.status_code < 500
        assert c.get("/v1/facts").json()["count"] == 0


@pytest.mark.parametrize("key", ["has space", "-leading", "a" * 201, "braces{x}", "ü"])
def test_bad_keys_are_refused(gateway: RunningGateway, key: str) -> None:
    with gateway.client() as c:
        r = c.put(f"/v1/facts/{key}", json={"value": "x"})
        assert 400 <= r.status_code < 500, r.text
        assert c.get("/v1/facts").json()["count"] == 0


def test_keys_with_slashes_and_dots_work_when_quoted(gateway: RunningGateway) -> None:
    with gateway.client() as c:
        assert c.put("/v1/facts/project%2Fdb.url", json={"value": "pg://x"}).status_code == 200
        assert c.get("/v1/facts/project/db.url").json()["key"] == "project/db.url"
        assert c.get("/v1/facts", params={"prefix": "project/"}).json()["count"] == 1
        assert c.delete("/v1/facts/project%2Fdb.url").status_code == 204


def test_odd_but_valid_unicode_is_stored_exactly(gateway: RunningGateway) -> None:
    value = "naïve café 🚀 日本語 \u200b zero-width, RTL \u202e text\nand a newline"
    with gateway.client() as c:
        assert c.put("/v1/facts/unicode", json={"value": value}).status_code == 200
        assert c.get("/v1/facts/unicode").json()["value"] == value
        assert json.loads(c.get("/v1/facts/unicode").text)["value"] == value


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"query": ""},
        {"query": 5},
        {"query": "x", "top_k": 0},
        {"query": "x", "top_k": "3"},
        {"query": "x", "extra": True},
    ],
)
def test_bad_searches_are_refused(gateway: RunningGateway, body: dict[str, object]) -> None:
    with gateway.client() as c:
        r = c.post("/v1/facts/search", json=body)
        assert r.status_code == 422, r.text
