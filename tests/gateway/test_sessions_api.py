"""Sessions: create, context updates refresh the TTL, a bounded recent index, isolation."""

from __future__ import annotations

import threading
import time

import pytest
import redis as redis_sync

from hivemind_common import keys
from support.gateway import RunningGateway


def test_a_session_is_created_read_and_its_context_replaced(gateway: RunningGateway) -> None:
    with gateway.client() as c:
        r = c.post("/v1/sessions", json={"id": "s1", "task": "fix the build", "files": ["a.py"]})
        assert r.status_code == 201, r.text
        assert r.json()["expires_in"] > keys.SESSION_TTL_S - 60
        assert c.post("/v1/sessions", json={"id": "s1"}).status_code == 409
        r = c.put("/v1/sessions/s1/context", json={"context": "editing Makefile"})
        body = r.json()
        assert body["context"] == "editing Makefile" and body["task"] == "fix the build"
        assert body["files"] == ["a.py"]
        assert c.get("/v1/sessions/s1").json()["context"] == "editing Makefile"
        assert c.get("/v1/sessions/nope").status_code == 404
        made = c.post("/v1/sessions", json={}).json()
        assert made["id"] and made["context"] is None


def test_writes_refresh_the_session_ttl(gateway: RunningGateway) -> None:
    raw = redis_sync.Redis.from_url(gateway.redis_url, decode_responses=True)
    with gateway.client() as c:
        c.post("/v1/sessions", json={"id": "s2"}).raise_for_status()
        key = keys.session("acme", "s2")
        raw.expire(key, 100)
        assert raw.ttl(key) <= 100
        c.put("/v1/sessions/s2/context", json={"context": "x"}).raise_for_status()
        assert raw.ttl(key) > keys.SESSION_TTL_S - 60
        raw.expire(key, 100)
        c.post("/v1/memories", json={"text": "a memory", "session_id": "s2"}).raise_for_status()
        assert raw.ttl(key) > keys.SESSION_TTL_S - 60
        assert c.get("/v1/sessions/s2").json()["memories"] == 1


def test_sessions_are_listed_newest_first_in_pages(gateway: RunningGateway) -> None:
    with gateway.client() as c:
        for i in range(7):
            c.post("/v1/sessions", json={"id": f"p{i}"}).raise_for_status()
        c.put("/v1/sessions/p0/context", json={"context": "touched last"}).raise_for_status()
        first = c.get("/v1/sessions", params={"limit": 4}).json()
        assert first["count"] == 7
        assert [s["id"] for s in first["data"]][:1] == ["p0"]
        second = c.get("/v1/sessions", params={"limit": 4, "cursor": first["next_cursor"]}).json()
        ids = [s["id"] for s in first["data"] + second["data"]]
        assert sorted(ids) == sorted(f"p{i}" for i in range(7))
        assert second["next_cursor"] is None


def test_a_listing_can_cut_each_context_to_its_start(gateway: RunningGateway) -> None:
    """A page of whole contexts can be 200 x 200,000 characters: ``preview_chars`` sends only
    their starts, ``context_chars`` says how long each is, and one session reads whole."""
    long = "é" * 150_000 + "end"
    with gateway.client() as c:
        c.put("/v1/sessions/big/context", json={"context": long}).raise_for_status()
        c.post("/v1/sessions", json={"id": "empty"}).raise_for_status()
        whole = {s["id"]: s for s in c.get("/v1/sessions").json()["data"]}
        assert whole["big"]["context"] == long and whole["big"]["context_chars"] == len(long)
        assert whole["empty"]["context"] is None and whole["empty"]["context_chars"] == 0
        cut = {s["id"]: s for s in c.get("/v1/sessions?preview_chars=10").json()["data"]}
        assert cut["big"]["context"] == "é" * 10 and cut["big"]["context_chars"] == len(long)
        assert cut["empty"]["context"] is None
        none = c.get("/v1/sessions", params={"preview_chars": 0}).json()["data"]
        assert {s["id"]: s["context"] for s in none}["big"] == ""
        assert c.get("/v1/sessions/big").json()["context"] == long  # one session: whole
        for bad in ("-1", "200001", "x"):
            refused = c.get("/v1/sessions", params={"preview_chars": bad})
            assert refused.status_code in (400, 422), refused.text


def test_an_expired_session_dropped_from_a_page_does_not_shift_the_next(
    gateway: RunningGateway,
) -> None:
    raw = redis_sync.Redis.from_url(gateway.redis_url, decode_responses=True)
    with gateway.client() as c:
        for i in range(6):
            c.post("/v1/sessions", json={"id": f"e{i}"}).raise_for_status()
            time.sleep(0.002)  # distinct scores
        raw.delete(keys.session("acme", "e4"))  # expired: listed once, then dropped
        first = c.get("/v1/sessions", params={"limit": 3}).json()
        second = c.get("/v1/sessions", params={"limit": 3, "cursor": first["next_cursor"]}).json()
        ids = [s["id"] for s in first["data"] + second["data"]]
        assert ids == ["e5", "e3", "e2", "e1", "e0"]


def test_the_sessions_index_holds_the_live_sessions_and_drops_expired_ones(
    gateway: RunningGateway,
) -> None:
    """Every live session stays listed (and counted by the quota); ids whose session expired
    leave the index on the next write."""
    raw = redis_sync.Redis.from_url(gateway.redis_url, decode_responses=True)
    index = keys.sessions_recent("acme")
    raw.zadd(index, {f"old{i}": i for i in range(1005)})  # last written in 1970: long expired
    with gateway.client() as c:
        for i in range(3):
            c.post("/v1/sessions", json={"id": f"live{i}"}).raise_for_status()
        assert raw.zcard(index) == 3
        listed = c.get("/v1/sessions", params={"limit": 10}).json()
        assert [s["id"] for s in listed["data"]] == ["live2", "live1", "live0"]


def test_sessions_belong_to_one_tenant(gateway: RunningGateway) -> None:
    with gateway.client("acme") as a, gateway.client("globex") as b:
        a.post("/v1/sessions", json={"id": "mine"}).raise_for_status()
        assert b.get("/v1/sessions/mine").status_code == 404
        assert b.get("/v1/sessions").json()["data"] == []
        assert b.post("/v1/sessions", json={"id": "mine"}).status_code == 201


def test_bad_session_input_is_refused(gateway: RunningGateway) -> None:
    with gateway.client() as c:
        for body in (
            {"id": "has space"},
            {"id": 5},
            {"context": ""},
            {"files": "a.py"},
            {"files": ["x"] * 500},
            {"metadata": {"blob": "x" * 20_000}},
            {"bogus": 1},
        ):
            r = c.post("/v1/sessions", json=body)
            assert 400 <= r.status_code < 500, (body, r.text)
        assert c.put("/v1/sessions/s/context", json={}).status_code == 422
        assert c.put("/v1/sessions/s/context", json={"context": 3}).status_code == 422
        assert c.get("/v1/sessions").json()["count"] == 0


def test_of_concurrent_creates_of_one_session_exactly_one_wins(gateway: RunningGateway) -> None:
    """The existence check and the write were two steps: both creates answered 201, and the
    second silently replaced the first's context."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    headers = {"Authorization": f"Bearer {gateway.key()}"}
    with ThreadPoolExecutor(8) as pool:
        for n in range(5):
            barrier = threading.Barrier(8)

            def create(i: int, n: int = n, barrier: threading.Barrier = barrier) -> httpx.Response:
                with httpx.Client(base_url=gateway.url, headers=headers, timeout=30) as c:
                    barrier.wait()
                    return c.post("/v1/sessions", json={"id": f"race{n}", "context": f"w{i}"})

            answers = list(pool.map(create, range(8)))
            codes = sorted(r.status_code for r in answers)
            assert codes == [201] + [409] * 7, codes
            winner = next(r for r in answers if r.status_code == 201).json()["context"]
            with gateway.client() as c:
                assert c.get(f"/v1/sessions/race{n}").json()["context"] == winner


def test_a_listing_never_drops_a_session_written_since_it_read_it(
    gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listing that read a session as expired removed it from the index even if a context PUT
    had brought it back meanwhile: live, but no longer listed nor counted by the quota."""
    from hivemind_gateway.memory import sessions

    raw = redis_sync.Redis.from_url(gateway.redis_url, decode_responses=True)
    with gateway.client() as c:
        c.post("/v1/sessions", json={"id": "back"}).raise_for_status()
        real = sessions.as_dict
        monkeypatch.setattr(  # the listing reads "back" as it was a moment ago: expired
            sessions, "as_dict", lambda r: {} if real(r).get("id") == "back" else real(r)
        )
        c.get("/v1/sessions")
        monkeypatch.setattr(sessions, "as_dict", real)
        assert raw.zscore(keys.sessions_recent("acme"), "back") is not None
        assert [s["id"] for s in c.get("/v1/sessions").json()["data"]] == ["back"]


def test_a_session_can_be_created_without_a_body(gateway: RunningGateway) -> None:
    with gateway.client() as c:
        bare = c.post("/v1/sessions")
        assert bare.status_code == 201, bare.text
        assert c.get(f"/v1/sessions/{bare.json()['id']}").status_code == 200
        assert c.post("/v1/sessions", content=b"null",
                      headers={"content-type": "application/json"}).status_code == 201  # fmt: skip
