"""Response shapes of ``GET /v1/audit``."""

from __future__ import annotations

from pydantic import BaseModel


class AuditEntryPublic(BaseModel):
    id: str
    ts: float
    action: str
    key_id: str
    tenant: str
    target: str
    source: str
    outcome: str
    detail: str


class AuditPublic(BaseModel):
    data: list[AuditEntryPublic]
    count: int
    next: str | None = None
