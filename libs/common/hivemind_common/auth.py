"""API keys (hashed in Redis) mapping to a tenant and a role, and the internal token.

A key looks like ``hm_<key id>_<secret>``. Only its SHA-256 is stored (keys are 192-bit random,
so a slow hash adds nothing); the key id is public and is what ``keys list`` shows and
``keys revoke`` takes. A caller never picks its tenant: the key does.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, cast

from fastapi import Depends, Request
from pydantic import BaseModel
from starlette.types import Scope

from hivemind_common import keys
from hivemind_common.errors import Forbidden, Invalid, NotFound, QuotaExceeded, Unauthorized
from hivemind_common.key_cache import KeyCache
from hivemind_common.redis.replies import as_dict

Role = Literal["read", "write", "admin", "operator"]
# ``admin`` manages its own tenant's keys and data; ``operator`` is the suite owner (training,
# promote, rollback, cleanup, suite-wide status, every tenant's keys)
ROLES: tuple[Role, ...] = ("read", "write", "admin", "operator")
_RANK = {role: i for i, role in enumerate(ROLES)}
MAX_KEY_RPM = 1_000_000
LIST_BATCH = 500  # key records read in one pipeline


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id, its tenant, its role and its own request rate (if set)."""

    key_id: str
    tenant: str
    role: Role
    rpm: int | None = None

    def allows(self, needed: Role) -> bool:
        return _RANK[self.role] >= _RANK[needed]

    @property
    def is_operator(self) -> bool:
        return self.role == "operator"

    def may_see_tenant(self, tenant: str | None) -> bool:
        """Operators see every tenant's records; everyone else only their own."""
        return self.is_operator or tenant == self.tenant


class ApiKeyPublic(BaseModel):
    key_id: str
    tenant: str
    role: Role
    name: str = ""
    created_at: float
    revoked: bool = False
    rpm: int | None = None


def hash_secret(plaintext: str) -> str:
    # surrogatepass: a form field decoded from an odd charset may hold a lone surrogate; it
    # hashes to a key that does not exist (a 401), not a UnicodeEncodeError (a 500)
    return hashlib.sha256(plaintext.encode("utf-8", "surrogatepass")).hexdigest()


_KEY_ID = re.compile(r"[0-9a-f]{1,32}")


def _split_key(plaintext: str) -> str | None:
    """The key id of ``hm_<id>_<secret>``, or None. The id is hex (``create``): anything else
    (a lone surrogate decoded from a form post) never reaches a Redis key name, whose strict
    encoding raised a 500."""
    parts = plaintext.split("_")
    if len(parts) != 3 or parts[0] != "hm" or not parts[1] or not parts[2]:
        return None
    return parts[1] if _KEY_ID.fullmatch(parts[1]) else None


class ApiKeyStore:
    """Create, list, revoke and verify API keys kept in Redis.

    With a ``cache`` (a service's, tailing revocations: :mod:`hivemind_common.key_cache`), a key
    verified a moment ago is not read from Redis again.
    """

    def __init__(self, redis: Any, *, cache: KeyCache | None = None) -> None:
        self.redis = redis
        self.cache = cache

    async def create(
        self,
        *,
        tenant: str,
        role: Role,
        name: str = "",
        rpm: int | None = None,
        max_live: int = 0,
    ) -> tuple[str, str]:
        """Make a key; returns (key id, the plaintext key, shown once).

        ``rpm`` is the key's own request rate per minute (None: the gateway's default).
        ``max_live``: QuotaExceeded when the tenant already holds that many live keys, operator
        keys aside (0: no limit). Concurrent creates may pass it together by as many as run at
        once.
        """
        if not keys.valid_tenant(tenant):
            raise Invalid("tenant must be 1-64 letters, digits, '.', '_' or '-'", param="tenant")
        if role not in ROLES:
            raise Invalid(f"role must be one of {', '.join(ROLES)}", param="role")
        if rpm is not None and not 1 <= rpm <= MAX_KEY_RPM:
            raise Invalid(f"rpm must be from 1 to {MAX_KEY_RPM}", param="rpm")
        # the suite owner's own chats train the shared model unless they said otherwise: the
        # tenant of the first operator key only (an operator key made later for another
        # tenant once opted that tenant in without its consent)
        first_operator = role == "operator" and not any(
            k.role == "operator" for k in await self.list(operators=True)
        )
        if max_live > 0:
            live = await self.live_count(tenant)
            if live >= max_live:
                raise QuotaExceeded(
                    f"tenant {tenant!r} holds {live} live API keys; the limit is {max_live} "
                    "(revoke one, or raise the gateway's HIVEMIND_MAX_KEYS_PER_TENANT)",
                    extra={"limit": max_live, "used": live},
                )
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
        if rpm is not None:
            record["rpm"] = str(rpm)
        await self.redis.transaction(
            ("HSET", keys.api_key(key_id), *[x for kv in record.items() for x in kv]),
            ("SADD", keys.api_keys_index(), key_id),
            ("SADD", keys.tenants_index(), tenant),
            *([("SADD", keys.tenant_api_keys(tenant), key_id)] if role != "operator" else []),
            durable=True,
        )
        if first_operator:
            await self.redis.hsetnx(keys.tenant_settings(tenant), "share_training", "1")
        return key_id, plaintext

    async def live_count(self, tenant: str) -> int:
        """The tenant's live keys, operator keys aside. Keys made before the per-tenant set
        existed are added to it from every key's record, once per tenant."""
        live_set = keys.tenant_api_keys(tenant)
        if not await self.redis.sismember(keys.tenant_api_keys_counted(), tenant):
            ids = sorted(await self.redis.smembers(keys.api_keys_index()))
            live = [
                key_id
                for key_id, rec in await _key_records(self.redis, ids)
                if rec.get("tenant") == tenant
                and rec.get("revoked") != "1"
                and rec.get("role") != "operator"
            ]
            if live:
                await self.redis.sadd(live_set, *live)
                # a key revoked after its record was read above: its revoke's SREM came before
                # this SADD, so it is taken out again (a revoke from now on removes it itself)
                gone = [k for k, rec in await _key_records(self.redis, live) if _revoked(rec)]
                if gone:
                    await self.redis.srem(live_set, *gone)
            await self.redis.sadd(keys.tenant_api_keys_counted(), tenant)
        return int(await self.redis.scard(live_set))

    async def list(
        self, *, tenant: str | None = None, operators: bool = True
    ) -> list[ApiKeyPublic]:
        """Keys, of one tenant with ``tenant``; ``operators=False`` leaves operator keys out
        (what a tenant's admin may see: the suite owner's keys are not its to manage)."""
        ids = sorted(await self.redis.smembers(keys.api_keys_index()))
        out: list[ApiKeyPublic] = []
        for key_id, rec in await _key_records(self.redis, ids):
            if not rec or (tenant and rec.get("tenant") != tenant):
                continue
            if not operators and rec.get("role") == "operator":
                continue
            out.append(
                ApiKeyPublic(
                    key_id=key_id,
                    tenant=rec["tenant"],
                    role=cast(Role, rec["role"]),
                    name=rec.get("name", ""),
                    created_at=float(rec.get("created_at", 0)),
                    revoked=rec.get("revoked") == "1",
                    rpm=_rpm(rec),
                )
            )
        return out

    async def revoke(
        self, key_id: str, *, tenant: str | None = None, operators: bool = True
    ) -> None:
        """Revoke a key; with ``tenant``, only a key of that tenant, and with
        ``operators=False`` never an operator key (others are NotFound)."""
        owner, role = await self.redis.hmget(keys.api_key(key_id), ["tenant", "role"])
        foreign = tenant is not None and owner != tenant
        if owner is None or foreign or (not operators and role == "operator"):
            raise NotFound(f"no API key with id {key_id!r}")
        # the flag and the signal every key cache tails, in one MULTI/EXEC (one slot: {auth})
        # an odd record's tenant (no live-key set of its own) must not stop its revoke
        counted = (
            [("SREM", keys.tenant_api_keys(owner), key_id)] if keys.valid_tenant(owner) else []
        )
        await self.redis.transaction(
            ("HSET", keys.api_key(key_id), "revoked", "1"),
            *counted,
            revocation_command(key_id),
            durable=True,
        )
        if self.cache is not None:
            self.cache.forget(key_id)

    async def verify(self, plaintext: str) -> Principal:
        """The principal of a presented key, or Unauthorized."""
        key_id = _split_key(plaintext)
        if key_id is None:
            raise Unauthorized("malformed API key")
        digest = hash_secret(plaintext)
        cache = self.cache
        if cache is not None:
            known = cache.get(key_id, digest)
            if known is not None:
                return known
            epoch = cache.epoch  # a revocation arriving while we read keeps this one out
        rec = await self.redis.hgetall(keys.api_key(key_id))
        if not rec or not hmac.compare_digest(rec.get("hash", ""), digest):
            raise Unauthorized("unknown API key")
        if rec.get("revoked") == "1":
            raise Unauthorized("API key revoked")
        principal = Principal(key_id=key_id, tenant=rec["tenant"], role=rec["role"], rpm=_rpm(rec))
        if cache is not None:
            cache.put(principal, digest, epoch)
        return principal


def revocation_command(key_id: str) -> tuple[Any, ...]:
    """The XADD that tells every key cache to forget ``key_id`` (capped, approximate trim)."""
    return (
        "XADD",
        keys.api_key_revocations(),
        "MAXLEN",
        "~",
        keys.KEY_REVOCATIONS_MAXLEN,
        "*",
        "key_id",
        key_id,
    )


async def _key_records(redis: Any, ids: list[str]) -> list[tuple[str, dict[str, str]]]:
    """Each key's record, read in pipelines of LIST_BATCH (one round trip a key made listing a
    few thousand keys take seconds)."""
    out: list[tuple[str, dict[str, str]]] = []
    for start in range(0, len(ids), LIST_BATCH):
        batch = ids[start : start + LIST_BATCH]
        async with redis.pipeline(transaction=False) as pipe:
            for key_id in batch:
                pipe.hgetall(keys.api_key(key_id))
            replies = await pipe.execute()
        out.extend(zip(batch, (as_dict(r) for r in replies), strict=True))
    return out


def _revoked(rec: dict[str, str]) -> bool:
    """A revoked key's record, or one that is gone."""
    return not rec or rec.get("revoked") == "1"


def _rpm(rec: dict[str, str]) -> int | None:
    raw = rec.get("rpm")
    return int(raw) if raw and raw.isdigit() else None


def parse_bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value, or None: the one parser every
    service uses (scheme case-insensitive, surrounding spaces dropped, an empty token is none)."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def bearer_token(request: Request) -> str | None:
    """The bearer token of a request, or None."""
    return parse_bearer(request.headers.get("authorization"))


def bearer_from_scope(scope: Scope) -> str | None:
    """The bearer token of an ASGI request (before a Request exists), or None."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            return parse_bearer(value.decode("latin-1"))
    return None


# ``app.state.session_auth``: the principal of a request that sent no key (None: 401)
SessionAuth = Callable[[Request], Awaitable[Principal | None]]


def require_role(
    role: Role, *, x_api_key: bool = False
) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency: the caller's principal, at least ``role``.

    ``x_api_key``: the key may also come in an ``x-api-key`` header (the Anthropic-style routes).
    """

    async def dependency(request: Request) -> Principal:
        token = bearer_token(request)
        if token is None and x_api_key:
            token = request.headers.get("x-api-key", "").strip() or None
        if token is None:
            # no key sent: a service may accept its own session (the gateway's web console
            # cookie, which also checks CSRF on unsafe methods) through this hook
            session_auth: SessionAuth | None = getattr(request.app.state, "session_auth", None)
            session = await session_auth(request) if session_auth is not None else None
            if session is None:
                how = "'x-api-key: <key>' or " if x_api_key else ""
                raise Unauthorized(
                    f"missing API key: send {how}'Authorization: Bearer <key>'",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            principal = session
        else:
            store: ApiKeyStore = request.app.state.api_keys
            principal = await store.verify(token)
        limiter = getattr(request.app.state, "rate_limiter", None)
        if limiter is not None:  # per-key and per-tenant rates (a refused request counts too)
            await limiter.check(principal)
        if not principal.allows(role):
            raise Forbidden(f"this key's role is {principal.role!r}; {role!r} is needed")
        if limiter is not None:  # concurrent inference: only a request that will run holds it
            await limiter.hold(principal, request)
        request.state.principal = principal
        return principal

    return dependency


async def require_internal(request: Request) -> None:
    """A FastAPI dependency for the internal services: the internal token, or 401."""
    expected: str | None = getattr(request.app.state, "internal_token", None)
    token = bearer_token(request)
    # bytes: compare_digest refuses str with non-ASCII characters (a TypeError, a 500)
    if (
        not expected
        or token is None
        or not hmac.compare_digest(token.encode("utf-8", "surrogatepass"), expected.encode())
    ):
        raise Unauthorized("internal token required", headers={"WWW-Authenticate": "Bearer"})


ReadPrincipal = Annotated[Principal, Depends(require_role("read"))]
WritePrincipal = Annotated[Principal, Depends(require_role("write"))]
AdminPrincipal = Annotated[Principal, Depends(require_role("admin"))]
OperatorPrincipal = Annotated[Principal, Depends(require_role("operator"))]
# the Anthropic-style routes: a read key, by Bearer or x-api-key
KeyHeaderPrincipal = Annotated[Principal, Depends(require_role("read", x_api_key=True))]
InternalCaller = Depends(require_internal)
