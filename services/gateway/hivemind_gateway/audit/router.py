"""``GET /v1/audit``: the trail of admin and operator actions, newest first.

An operator sees every tenant's entries (or one, with ``?tenant=``); an admin only its own
tenant's, whatever it asks for.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from hivemind_common import audit
from hivemind_common.auth import AdminPrincipal
from hivemind_common.ids import TENANT_PATTERN
from hivemind_gateway.audit.schemas import AuditEntryPublic, AuditPublic
from hivemind_gateway.deps import RedisDep

router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.get("", response_model=AuditPublic)
async def list_audit(
    principal: AdminPrincipal,
    redis: RedisDep,
    action: Annotated[str | None, Query(pattern=r"^[a-z_.]{1,64}$")] = None,
    tenant: Annotated[str | None, Query(pattern=TENANT_PATTERN)] = None,
    since: Annotated[float | None, Query(ge=0, le=1e11, description="Unix time")] = None,
    before: Annotated[str | None, Query(pattern=r"^\d{1,20}-\d{1,20}$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPublic:
    """Audit entries, filtered by action (``keys.`` for a family), tenant and time; paged by
    the ``next`` cursor given back as ``before``."""
    scope = tenant if principal.is_operator else principal.tenant
    entries, cursor = await audit.read(
        redis, tenant=scope, action=action, since=since, before=before, limit=limit
    )
    data = [AuditEntryPublic.model_validate(e.public()) for e in entries]
    return AuditPublic(data=data, count=len(data), next=cursor)
