"""The tool cache: any JSON by tool and input hash, with a TTL, per tenant."""

from __future__ import annotations

from support.gateway import RunningGateway


def test_a_tool_output_round_trips_with_its_ttl(gateway: RunningGateway) -> None:
    value = {"files": ["a.py", "b.py"], "count": 2, "ok": True, "note": "ünïcode 🚀"}
    with gateway.client() as c:
        assert c.get("/v1/cache/grep/abc123").status_code == 404
        r = c.put("/v1/cache/grep/abc123", json={"value": value, "ttl_s": 60})
        assert r.status_code == 200, r.text
        got = c.get("/v1/cache/grep/abc123").json()
        assert got["value"] == value and 0 < got["expires_in"] <= 60


def test_cache_entries_belong_to_one_tenant(gateway: RunningGateway) -> None:
    with gateway.client("acme") as a, gateway.client("globex") as b:
        a.put("/v1/cache/ls/h1", json={"value": [1, 2]}).raise_for_status()
        assert b.get("/v1/cache/ls/h1").status_code == 404


def test_bad_cache_writes_are_refused(gateway: RunningGateway) -> None:
    with gateway.client() as c:
        assert c.put("/v1/cache/ls/h1", json={}).status_code == 422
        assert c.put("/v1/cache/ls/h1", json={"value": 1, "ttl_s": 0}).status_code == 422
        assert c.put("/v1/cache/ls/h1", json={"value": 1, "extra": 1}).status_code == 422
        assert c.put("/v1/cache/bad tool/h1", json={"value": 1}).status_code == 422
        assert c.put("/v1/cache/ls/" + "h" * 300, json={"value": 1}).status_code == 422
        assert c.put("/v1/cache/ls/h1", json={"value": "x" * 10_000_000}).status_code == 413
        assert c.get("/v1/cache/ls/h1").status_code == 404
    with gateway.client(role="read") as r:
        assert r.put("/v1/cache/ls/h1", json={"value": 1}).status_code == 403
