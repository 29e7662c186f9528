"""Who manages which keys: an admin its own tenant's, the operator every tenant's."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from hivemind_common.auth import ApiKeyStore
from hivemind_common.redis import connect_redis


def test_an_admin_lists_creates_and_revokes_only_its_own_tenants_keys(gateway: Any) -> None:
    gateway.key("globex", "write")
    with gateway.client("acme", "admin") as admin:
        listed = admin.get("/v1/keys").json()
        assert {k["tenant"] for k in listed["data"]} == {"acme"}
        # ?tenant= does not widen an admin's view
        assert {k["tenant"] for k in admin.get("/v1/keys?tenant=globex").json()["data"]} == {"acme"}
        made = admin.post("/v1/keys", json={"role": "read", "name": "ci", "rpm": 30})
        assert made.status_code == 201, made.text
        new = made.json()
        assert (new["tenant"], new["role"]) == ("acme", "read")
        with httpx.Client(base_url=gateway.url) as raw:
            auth = {"Authorization": f"Bearer {new['key']}"}
            assert raw.get("/v1/facts", headers=auth).status_code == 200
        assert admin.post("/v1/keys", json={"tenant": "globex"}).status_code == 403
        assert admin.post("/v1/keys", json={"role": "operator"}).status_code == 403
        # an admin cannot lift a key above the suite's default rate (1200 here)
        assert admin.post("/v1/keys", json={"rpm": 1_000_000}).status_code == 403
        globex_ids = [k.key_id for k in _all_keys(gateway) if k.tenant == "globex"]
        assert admin.delete(f"/v1/keys/{globex_ids[0]}").status_code == 404
        assert admin.delete(f"/v1/keys/{new['key_id']}").status_code == 204
        with httpx.Client(base_url=gateway.url) as raw:
            assert raw.get("/v1/facts", headers=auth).status_code == 401
    assert all(not k.revoked for k in _all_keys(gateway) if k.tenant == "globex")
    with gateway.client("acme", "write") as writer:
        assert writer.get("/v1/keys").status_code == 403


def test_the_operator_manages_every_tenants_keys(gateway: Any) -> None:
    gateway.key("globex", "write")
    with gateway.client("default", "operator") as op:
        tenants = {k["tenant"] for k in op.get("/v1/keys").json()["data"]}
        assert {"globex", "default"} <= tenants
        made = op.post("/v1/keys", json={"tenant": "globex", "role": "admin"})
        assert made.status_code == 201, made.text
        assert op.delete(f"/v1/keys/{made.json()['key_id']}").status_code == 204


def test_an_admin_of_the_operators_tenant_can_neither_see_nor_revoke_the_operator_key(
    gateway: Any,
) -> None:
    with gateway.client("default", "operator") as op:
        op_id = next(
            k["key_id"]
            for k in op.get("/v1/keys?tenant=default").json()["data"]
            if k["role"] == "operator"
        )
    with gateway.client("default", "admin") as admin:
        assert all(k["role"] != "operator" for k in admin.get("/v1/keys").json()["data"])
        assert admin.delete(f"/v1/keys/{op_id}").status_code == 404
    with gateway.client("default", "operator") as op:
        assert op.get("/v1/facts").status_code == 200  # still in force


def test_hivemind_up_writes_an_operator_key_and_replaces_an_old_admin_key(
    redis_url: str, tmp_path: Path
) -> None:
    from hivemind_cli.up_cmd import ensure_admin_key

    async def role_of(plaintext: str) -> str:
        redis = connect_redis(redis_url)
        try:
            return (await ApiKeyStore(redis).verify(plaintext)).role
        finally:
            await redis.aclose()

    secrets = tmp_path / "secrets"
    secrets.mkdir()
    old = asyncio.run(_make_key(redis_url, "admin"))
    (secrets / "admin.key").write_text(old + "\n")
    path, made = asyncio.run(ensure_admin_key(redis_url, secrets))
    assert made and asyncio.run(role_of(path.read_text().strip())) == "operator"
    assert path.read_text().strip() != old
    assert asyncio.run(ensure_admin_key(redis_url, secrets)) == (path, False)


async def _make_key(redis_url: str, role: str) -> str:
    redis = connect_redis(redis_url)
    try:
        return (await ApiKeyStore(redis).create(tenant="default", role=role))[1]  # type: ignore[arg-type]
    finally:
        await redis.aclose()


def _all_keys(gateway: Any) -> list[Any]:
    async def run() -> list[Any]:
        redis = connect_redis(gateway.redis_url)
        try:
            return await ApiKeyStore(redis).list()
        finally:
            await redis.aclose()

    return asyncio.run(run())


def test_listing_reads_the_key_records_in_pipelines(gateway: Any) -> None:
    """Listing read each key's record in a round trip of its own: seconds for a few thousand
    keys, on every key listing and every operator key made."""
    from hivemind_common import auth

    class NoSingleReads:  # the store's client, with one-by-one record reads refused
        def __init__(self, redis: Any) -> None:
            self._redis = redis

        def __getattr__(self, name: str) -> Any:
            if name == "hgetall":
                raise AssertionError("a key record read on its own")
            return getattr(self._redis, name)

    async def run() -> tuple[list[str], list[Any]]:
        redis = connect_redis(gateway.redis_url)
        try:
            store = ApiKeyStore(redis)
            made = [(await store.create(tenant="pipelined", role="read"))[0] for _ in range(7)]
            return made, await ApiKeyStore(NoSingleReads(redis)).list(tenant="pipelined")
        finally:
            await redis.aclose()

    batch = auth.LIST_BATCH
    auth.LIST_BATCH = 3  # several pipelines, the last one short
    try:
        made, listed = asyncio.run(run())
    finally:
        auth.LIST_BATCH = batch
    assert [k.key_id for k in listed] == sorted(made)
    assert {(k.tenant, k.role, k.revoked) for k in listed} == {("pipelined", "read", False)}


def test_a_tenant_holds_at_most_so_many_live_keys(
    redis_url: str, internal_token: str, data_dir: Path
) -> None:
    """An admin could make keys without end: every one a record in Redis that each listing of
    any tenant's keys reads. Revoked keys and the operator's do not count; another tenant has
    its own limit; keys made before the limit existed (no per-tenant set yet) are counted too."""
    from hivemind_common import keys
    from support.gateway import running_gateway

    async def old_keys() -> None:  # acme's keys as an older gateway left them: two live ones,
        redis = connect_redis(redis_url)  # one revoked, and the operator's (never counted)
        try:
            store = ApiKeyStore(redis)
            made = [(await store.create(tenant="acme", role="read"))[0] for _ in range(3)]
            await store.revoke(made[0])
            await store.create(tenant="acme", role="operator")
            await redis.delete(keys.tenant_api_keys("acme"), keys.tenant_api_keys_counted())
        finally:
            await redis.aclose()

    asyncio.run(old_keys())
    gw_cm = running_gateway(redis_url, internal_token, data_dir, max_keys_per_tenant=4)
    with gw_cm as gw, gw.client("acme", "admin") as admin:  # the admin's own key: the third
        made = admin.post("/v1/keys", json={"role": "read"})
        assert made.status_code == 201, made.text
        over = admin.post("/v1/keys", json={"role": "read"})
        assert over.status_code == 403, over.text
        assert over.json()["code"] == "quota_exceeded" and "limit is 4" in over.json()["detail"]
        assert admin.delete(f"/v1/keys/{made.json()['key_id']}").status_code == 204
        assert admin.post("/v1/keys", json={"role": "read"}).status_code == 201
        with gw.client("globex", "admin") as other:
            assert other.post("/v1/keys", json={"role": "read"}).status_code == 201
