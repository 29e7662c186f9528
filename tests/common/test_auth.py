"""API keys map to a tenant and a role; the internal token guards internal services."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from hivemind_common.auth import (
    AdminPrincipal,
    ApiKeyStore,
    InternalCaller,
    ReadPrincipal,
    WritePrincipal,
    hash_secret,
)
from hivemind_common.errors import Invalid, NotFound, Unauthorized
from hivemind_common.keys import api_key
from hivemind_common.service_app import base_app, mark_started
from support.servers import serve_app


def _app(redis_url: str, token: str) -> FastAPI:
    from contextlib import asynccontextmanager

    from hivemind_common.redis import connect_redis

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        redis = connect_redis(redis_url)
        app.state.api_keys = ApiKeyStore(redis)
        app.state.internal_token = token
        mark_started(app)
        yield
        await redis.aclose()

    app = base_app(service="authtest", lifespan=lifespan)

    @app.get("/read")
    async def read(p: ReadPrincipal) -> dict[str, str]:
        return {"tenant": p.tenant, "role": p.role}

    @app.post("/write")
    async def write(p: WritePrincipal) -> dict[str, str]:
        return {"tenant": p.tenant}

    @app.post("/admin")
    async def admin(p: AdminPrincipal) -> dict[str, str]:
        return {"tenant": p.tenant}

    @app.get("/internal", dependencies=[InternalCaller])
    async def internal() -> dict[str, bool]:
        return {"ok": True}

    return app


async def test_a_created_key_is_stored_only_as_a_hash(redis_client) -> None:  # type: ignore[no-untyped-def]
    store = ApiKeyStore(redis_client)
    key_id, plaintext = await store.create(tenant="acme", role="write")
    record = await redis_client.hgetall(api_key(key_id))
    assert plaintext not in str(record)
    assert record["hash"] == hash_secret(plaintext)
    principal = await store.verify(plaintext)
    assert (principal.tenant, principal.role, principal.key_id) == ("acme", "write", key_id)


async def test_revoked_and_unknown_keys_are_refused(redis_client) -> None:  # type: ignore[no-untyped-def]
    store = ApiKeyStore(redis_client)
    key_id, plaintext = await store.create(tenant="acme", role="read")
    await store.revoke(key_id)
    with pytest.raises(Unauthorized):
        await store.verify(plaintext)
    with pytest.raises(Unauthorized):
        await store.verify(f"hm_{key_id}_wrongsecret")
    with pytest.raises(Unauthorized):
        await store.verify("not-a-key")
    with pytest.raises(NotFound):
        await store.revoke("doesnotexist")


async def test_bad_tenant_or_role_is_invalid(redis_client) -> None:  # type: ignore[no-untyped-def]
    store = ApiKeyStore(redis_client)
    with pytest.raises(Invalid):
        await store.create(tenant="a{b}:c", role="read")
    with pytest.raises(Invalid):
        await store.create(tenant="acme", role="root")  # type: ignore[arg-type]


async def test_list_shows_ids_and_roles_but_never_secrets(redis_client) -> None:  # type: ignore[no-untyped-def]
    store = ApiKeyStore(redis_client)
    await store.create(tenant="acme", role="read", name="laptop")
    _, other = await store.create(tenant="globex", role="admin")
    listed = await store.list(tenant="acme")
    assert [(k.tenant, k.role, k.name) for k in listed] == [("acme", "read", "laptop")]
    assert other not in str(await store.list())


def test_roles_are_enforced_over_http(redis_url: str, internal_token: str) -> None:

    from support.gateway import create_api_key

    reader = create_api_key(redis_url, tenant="acme", role="read")
    writer = create_api_key(redis_url, tenant="acme", role="write")
    admin = create_api_key(redis_url, tenant="acme", role="admin")
    with serve_app(_app(redis_url, internal_token)) as base:

        def call(method: str, path: str, key: str | None) -> httpx.Response:
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            return httpx.request(method, base + path, headers=headers)

        missing = call("GET", "/read", None)
        assert missing.status_code == 401
        assert missing.headers["content-type"].startswith("application/problem+json")
        assert call("GET", "/read", "hm_nope_nope").status_code == 401
        assert call("GET", "/read", reader).json() == {"tenant": "acme", "role": "read"}
        assert call("POST", "/write", reader).status_code == 403
        assert call("POST", "/write", writer).status_code == 200
        assert call("POST", "/admin", writer).status_code == 403
        assert call("POST", "/admin", admin).status_code == 200


def test_internal_routes_need_the_internal_token(redis_url: str, internal_token: str) -> None:
    with serve_app(_app(redis_url, internal_token)) as base:
        assert httpx.get(base + "/internal").status_code == 401
        bad = {"Authorization": "Bearer wrong"}
        assert httpx.get(base + "/internal", headers=bad).status_code == 401
        # a raw non-ASCII byte: compare_digest on str raised TypeError, a 500
        odd = [(b"Authorization", b"Bearer \xe9\xff")]
        assert httpx.get(base + "/internal", headers=odd).status_code == 401
        good = {"Authorization": f"Bearer {internal_token}"}
        assert httpx.get(base + "/internal", headers=good).json() == {"ok": True}
        # health and metrics stay open
        assert httpx.get(base + "/healthz").status_code == 200
        assert httpx.get(base + "/metrics").status_code == 200


async def test_operator_outranks_admin_and_owns_its_tenants_training_consent(redis_client) -> None:  # type: ignore[no-untyped-def]
    from hivemind_common.auth import Principal
    from hivemind_common.keys import tenant_settings

    store = ApiKeyStore(redis_client)
    _, op_key = await store.create(tenant="owner", role="operator", rpm=90)
    op = await store.verify(op_key)
    assert (op.role, op.rpm, op.is_operator) == ("operator", 90, True)
    assert op.allows("admin") and op.may_see_tenant("acme")
    admin = Principal(key_id="x", tenant="acme", role="admin")
    assert not admin.allows("operator") and not admin.may_see_tenant("owner")
    assert await redis_client.hget(tenant_settings("owner"), "share_training") == "1"
    _, admin_key = await store.create(tenant="acme", role="admin")
    assert await redis_client.hget(tenant_settings("acme"), "share_training") is None
    # an operator key made later for another tenant does not opt that tenant in
    await store.create(tenant="globex", role="operator")
    assert await redis_client.hget(tenant_settings("globex"), "share_training") is None
    admin_id = (await store.verify(admin_key)).key_id
    with pytest.raises(NotFound):  # an admin's revoke is scoped to its tenant
        await store.revoke(admin_id, tenant="owner")
    with pytest.raises(Invalid):
        await store.create(tenant="acme", role="read", rpm=0)
