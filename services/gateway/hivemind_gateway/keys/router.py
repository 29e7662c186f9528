"""API keys over HTTP: an ``admin`` manages its own tenant's keys, an ``operator`` every tenant's.

A key of another tenant is answered 404 to an admin, exactly like a key that does not exist, so
an admin learns nothing about other tenants.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from hivemind_common import audit
from hivemind_common.audit import audited
from hivemind_common.auth import AdminPrincipal
from hivemind_common.errors import Forbidden
from hivemind_gateway.deps import ApiKeysDep, ClientAddressDep, RedisDep, SettingsDep
from hivemind_gateway.keys.schemas import KeyCreate, KeyCreated, KeysPublic

router = APIRouter(prefix="/v1/keys", tags=["keys"])

KeyId = Annotated[str, Path(pattern=r"^[0-9a-f]{1,32}$", description="the key's id")]


@router.get("", response_model=KeysPublic)
async def list_keys(
    principal: AdminPrincipal,
    store: ApiKeysDep,
    tenant: Annotated[str | None, Query(max_length=64)] = None,
) -> KeysPublic:
    """Keys of the caller's tenant, operator keys left out (an operator: every key, or one
    tenant's with ``?tenant=``)."""
    scope = tenant if principal.is_operator else principal.tenant
    data = await store.list(tenant=scope, operators=principal.is_operator)
    return KeysPublic(data=data, count=len(data))


@router.post("", response_model=KeyCreated, status_code=201)
async def create_key(
    body: KeyCreate,
    principal: AdminPrincipal,
    store: ApiKeysDep,
    redis: RedisDep,
    source: ClientAddressDep,
    settings: SettingsDep,
) -> KeyCreated:
    """Make a key; an admin only for its own tenant and never an operator key."""
    tenant = body.tenant or principal.tenant
    # filed under the tenant it concerns; an admin's attempt on another tenant under its own,
    # so one tenant's admins never see another's key ids
    filed = tenant if principal.is_operator else principal.tenant
    async with audited(
        redis, "keys.create", key_id=principal.key_id, tenant=filed, source=source
    ) as entry:
        entry.detail = f"role={body.role}"
        if not principal.is_operator:
            if tenant != principal.tenant:
                raise Forbidden("an admin key manages only its own tenant's keys", param="tenant")
            if body.role == "operator":
                raise Forbidden("only an operator key can make operator keys", param="role")
            ceiling = settings.default_key_rpm
            if ceiling and body.rpm is not None and body.rpm > ceiling:
                # an admin may slow its keys down, not lift them above the suite's default
                raise Forbidden(
                    f"an admin key may give its keys at most {ceiling} requests a minute",
                    param="rpm",
                )
        key_id, plaintext = await store.create(
            tenant=tenant, role=body.role, name=body.name, rpm=body.rpm,
            max_live=settings.max_keys_per_tenant,
        )  # fmt: skip
        entry.target = key_id
    return KeyCreated(key=plaintext, key_id=key_id, tenant=tenant, role=body.role)


@router.delete("/{key_id}", status_code=204)
async def revoke_key(
    key_id: KeyId,
    principal: AdminPrincipal,
    store: ApiKeysDep,
    redis: RedisDep,
    source: ClientAddressDep,
) -> Response:
    """Revoke a key of the caller's tenant (an operator: any key)."""
    # filed under the revoked key's tenant when the operator acts, so that tenant sees it
    filed = await audit.key_tenant(redis, key_id) if principal.is_operator else principal.tenant
    async with audited(
        redis,
        "keys.revoke",
        key_id=principal.key_id,
        tenant=filed or principal.tenant,
        source=source,
        target=key_id,
    ):
        if principal.is_operator:
            await store.revoke(key_id)
        else:  # an admin: its own tenant's keys, never the suite owner's
            await store.revoke(key_id, tenant=principal.tenant, operators=False)
    return Response(status_code=204)
