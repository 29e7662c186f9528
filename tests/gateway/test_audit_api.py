"""`GET /v1/audit`: every admin and operator action leaves one entry, reads leave none, and a
tenant's admin sees only its own tenant's entries."""

from __future__ import annotations

import asyncio
from typing import Any

from hivemind_common import audit
from hivemind_common.redis import connect_redis


def _entries(gateway: Any) -> list[audit.AuditEntry]:
    async def go() -> list[audit.AuditEntry]:
        redis = connect_redis(gateway.redis_url)
        try:
            return (await audit.read(redis, limit=1000))[0]
        finally:
            await redis.aclose()

    return asyncio.run(go())


def test_each_admin_and_operator_action_is_recorded_with_who_what_where_and_outcome(
    gateway: Any,
) -> None:
    operator_key = gateway.key("root", "operator")
    operator_id = operator_key.split("_")[1]  # hm_<id>_<secret>
    with gateway.client("acme", "admin") as admin, gateway.client("root", "operator") as op:
        made = admin.post("/v1/keys", json={"role": "read"}).json()
        assert admin.post("/v1/keys", json={"role": "operator"}).status_code == 403
        assert admin.delete(f"/v1/keys/{made['key_id']}").status_code == 204
        job = op.post("/v1/learning/train", json={}).json()["job_id"]
        assert op.post("/v1/models/default/promote", json={"version": "v9"}).status_code == 404
        assert op.post("/v1/models/default/rollback").status_code >= 400
    got = [(e.action, e.outcome, e.tenant, e.target) for e in reversed(_entries(gateway))]
    assert got == [
        ("keys.create", "ok", "acme", made["key_id"]),
        ("keys.create", "denied", "acme", ""),
        ("keys.revoke", "ok", "acme", made["key_id"]),
        ("learning.train", "ok", "root", job),
        ("models.promote", "failed", "root", "default@v9"),
        ("models.rollback", "failed", "root", "default"),
    ]
    entries = _entries(gateway)
    assert {e.source for e in entries} == {"127.0.0.1"}
    assert all(e.key_id and e.ts > 0 for e in entries)
    assert entries[0].key_id == operator_id
    assert "role=read" in entries[-1].detail
    assert not any(operator_key in e.detail or operator_key in e.target for e in entries)


def test_reads_leave_no_entry(gateway: Any) -> None:
    with gateway.client("acme", "admin") as admin, gateway.client("root", "operator") as op:
        assert admin.get("/v1/keys").status_code == 200
        assert admin.get("/v1/audit").status_code == 200
        assert op.get("/v1/learning/status").status_code == 200
        assert op.get("/v1/models/versions").status_code == 200
        assert admin.put("/v1/facts/k", json={"value": "v"}).status_code in (200, 201)
    assert _entries(gateway) == []


def test_a_tenant_admin_sees_only_its_tenants_entries_and_the_operator_sees_all(
    gateway: Any,
) -> None:
    with gateway.client("acme", "admin") as acme, gateway.client("globex", "admin") as globex:
        acme.post("/v1/keys", json={"role": "read"})
        globex.post("/v1/keys", json={"role": "write"})
        globex.post("/v1/keys", json={"role": "read"})
        mine = acme.get("/v1/audit").json()
        assert [e["tenant"] for e in mine["data"]] == ["acme"]
        # asking for another tenant does not widen an admin's view
        assert acme.get("/v1/audit?tenant=globex").json()["data"][0]["tenant"] == "acme"
    with gateway.client("root", "operator") as op:
        every = op.get("/v1/audit").json()
        assert sorted(e["tenant"] for e in every["data"]) == ["acme", "globex", "globex"]
        only = op.get("/v1/audit", params={"tenant": "globex"}).json()
        assert {e["tenant"] for e in only["data"]} == {"globex"}
    with gateway.client("acme", "write") as writer:
        assert writer.get("/v1/audit").status_code == 403


def test_the_audit_filters_by_action_and_time_and_pages_newest_first(gateway: Any) -> None:
    with gateway.client("root", "operator") as op:
        ids = [op.post("/v1/keys", json={"tenant": "acme"}).json()["key_id"] for _ in range(5)]
        op.post("/v1/learning/train", json={})
        first = op.get("/v1/audit", params={"action": "keys.", "limit": 2}).json()
        assert [e["target"] for e in first["data"]] == [ids[4], ids[3]]
        second = op.get(
            "/v1/audit", params={"action": "keys.create", "limit": 10, "before": first["next"]}
        ).json()
        assert [e["target"] for e in second["data"]] == [ids[2], ids[1], ids[0]]
        assert second["next"] is None
        trains = op.get("/v1/audit", params={"action": "learning.train"}).json()
        assert trains["count"] == 1
        newest = trains["data"][0]["ts"]
        later = op.get("/v1/audit", params={"since": newest + 3600}).json()
        assert later["count"] == 0
        assert op.get("/v1/audit", params={"before": "nope"}).status_code == 422


def test_a_memories_import_batch_is_recorded_under_the_callers_tenant(gateway: Any) -> None:
    with gateway.client("acme", "write") as writer:
        answer = writer.post("/v1/memories/batch", json={"memories": [{"text": "one"}]})
        assert answer.status_code == 200, answer.text
        result = answer.json()
    (entry,) = _entries(gateway)
    assert (entry.action, entry.tenant, entry.outcome) == ("memories.import", "acme", "ok")
    assert entry.detail == f"stored={result['stored']} failed={result['failed']}"
    assert entry.key_id == gateway.key("acme", "write").split("_")[1]


def test_out_of_range_times_and_cursors_are_a_400_not_a_500(gateway: Any) -> None:
    with gateway.client("acme", "admin") as admin:
        for query in (
            "since=inf",
            "since=nan",
            "since=1e300",
            "before=0-0",
            "before=99999999999999999999-0",
            "before=1-99999999999999999999",
        ):
            resp = admin.get(f"/v1/audit?{query}")
            assert resp.status_code in (400, 422), (query, resp.status_code, resp.text)
        assert admin.get("/v1/audit?since=0&before=1-0").status_code == 200


def test_entries_are_filed_under_the_tenant_they_concern_and_leak_to_no_other(
    gateway: Any,
) -> None:
    with gateway.client("acme", "admin") as acme:
        refused = acme.post("/v1/keys", json={"tenant": "globex", "role": "read"})
        assert refused.status_code == 403
    with gateway.client("root", "operator") as op:
        made = op.post("/v1/keys", json={"tenant": "globex", "role": "read"}).json()
        assert op.delete(f"/v1/keys/{made['key_id']}").status_code == 204
    with gateway.client("acme", "admin") as acme, gateway.client("globex", "admin") as globex:
        mine = acme.get("/v1/audit").json()["data"]
        theirs = globex.get("/v1/audit").json()["data"]
    # acme's refused attempt is acme's; the operator's create and revoke in globex are globex's
    assert [(e["action"], e["outcome"]) for e in mine] == [("keys.create", "denied")]
    assert sorted(e["action"] for e in theirs) == ["keys.create", "keys.revoke"]
