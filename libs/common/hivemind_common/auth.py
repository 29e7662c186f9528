"""API keys (hashed in Redis) mapping to a tenant and a role, and the internal token.

A key looks like ``hm_<key id>_<secret>``. Only its SHA-256 is stored (keys are 192-bit random,
so a slow hash adds nothing); the key id is public and is what ``keys list`` shows and
``keys revoke`` takes. A caller never picks its tenant: the key does.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, Request
from pydantic import BaseModel

from hivemind_common import keys
from hivemind_common.errors import Forbidden, Invalid, NotFound, Unauthorized

Role = Literal["read", "write", "admin"]
ROLES: tuple[Role, ...] = ("read", "write", "admin")
_RANK = {role: i for i, role in enumerate(ROLES)}


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id, its tenant and its role."""

    key_id: str
    tenant: str
    role: Role

    def allows(self, needed: Role) -> bool:
        return _RANK[self.role] >= _RANK[needed]


class ApiKeyPublic(BaseModel):
    key_id: str
    tenant: str
    role: Role
    name: str = ""
    created_at: float
    revoked: bool = False


def hash_secret(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def _split_key(plaintext: str) -> str | None:
    parts = plaintext.split("_")
    if len(parts) != 3 or parts[0] != "hm" or not parts[1] or not parts[2]:
        return None
    return parts[1]


class ApiKeyStore:
    """Create, list, revoke and verify API keys kept in Redis."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis

    async def create(self, *, tenant: str, role: Role, name: str = "") -> tuple[str, str]:
        """Make a key; returns (key id, the plaintext key, shown once)."""
        if not keys.valid_tenant(tenant):
            raise Invalid("tenant must be 1-64 letters, digits, '.', '_' or '-'", param="tenant")
        if role not in ROLES:
            raise Invalid(f"role must be one of {', '.join(ROLES)}", param="role")
        key_id = secrets.token_hex(6)
        plaintext = f"hm_{key_id}_{secrets.token_urlsafe(24).replace('_', 'x')}"
        record = {
            "tenant": tenant,
            "role": role,
            "name": name,
            "hash": hash_secret(plaintext),
            "created_at": f"{time.time():.3f}",
            "revoked": "0",
        }
        await self.redis.transaction(
            ("HSET", keys.api_key(key_id), *[x for kv in record.items() for x in kv]),
            ("SADD", keys.api_keys_index(), key_id),
            ("SADD", keys.tenants_index(), tenant),
            durable=True,
        )
        return key_id, plaintext

    async def list(self, *, tenant: str | None = None) -> list[ApiKeyPublic]:
        ids = sorted(await self.redis.smembers(keys.api_keys_index()))
        out: list[ApiKeyPublic] = []
        for key_id in ids:
            rec = await self.redis.hgetall(keys.api_key(key_id))
            if not rec or (tenant and rec.get("tenant") != tenant):
                continue
            out.append(
                ApiKeyPublic(
                    key_id=key_id,
                    tenant=rec["tenant"],
                    role=rec["role"],
                    name=rec.get("name", ""),
                    created_at=float(rec.get("created_at", 0)),
                    revoked=rec.get("revoked") == "1",
                )
            )
        return out

    async def revoke(self, key_id: str) -> None:
        if not await self.redis.exists(keys.api_key(key_id)):
            raise NotFound(f"no API key with id {key_id!r}")
        await self.redis.transaction(("HSET", keys.api_key(key_id), "revoked", "1"), durable=True)

    async def verify(self, plaintext: str) -> Principal:
        """The principal of a presented key, or Unauthorized."""
        key_id = _split_key(plaintext)
        if key_id is None:
            raise Unauthorized("malformed API key")
        rec = await self.redis.hgetall(keys.api_key(key_id))
        if not rec or not hmac.compare_digest(rec.get("hash", ""), hash_secret(plaintext)):
            raise Unauthorized("unknown API key")
        if rec.get("revoked") == "1":
            raise Unauthorized("API key revoked")
        return Principal(key_id=key_id, tenant=rec["tenant"], role=rec["role"])


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def require_role(role: Role) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency: the caller's principal, at least ``role``."""

    async def dependency(request: Request) -> Principal:
        token = bearer_token(request)
        if token is None:
            raise Unauthorized(
                "missing API key: send 'Authorization: Bearer <key>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        store: ApiKeyStore = request.app.state.api_keys
        principal = await store.verify(token)
        if not principal.allows(role):
            raise Forbidden(f"this key's role is {principal.role!r}; {role!r} is needed")
        request.state.principal = principal
        return principal

    return dependency


async def require_internal(request: Request) -> None:
    """A FastAPI dependency for the internal services: the internal token, or 401."""
    expected: str | None = getattr(request.app.state, "internal_token", None)
    token = bearer_token(request)
    if not expected or token is None or not hmac.compare_digest(token, expected):
        raise Unauthorized("internal token required", headers={"WWW-Authenticate": "Bearer"})


ReadPrincipal = Annotated[Principal, Depends(require_role("read"))]
WritePrincipal = Annotated[Principal, Depends(require_role("write"))]
AdminPrincipal = Annotated[Principal, Depends(require_role("admin"))]
InternalCaller = Depends(require_internal)
