"""Console sign-ins: an API key is exchanged for an opaque session id kept in Redis.

The browser holds only the session id, in an HttpOnly, SameSite=Strict cookie (Secure over
https); the key itself is checked once at sign-in and never stored, in Redis or in the browser.
Each session has its own CSRF token, which every state-changing call made with the cookie must
send back (``X-CSRF-Token`` header, or the ``csrf_token`` field of a console form). A session
lives :data:`~hivemind_common.keys.CONSOLE_SESSION_TTL_S` and ends at once when its key is
revoked or the user signs out.
"""

from __future__ import annotations

import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from hivemind_common import keys
from hivemind_common.auth import ROLES, Principal

COOKIE_NAME = "hm_console"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{32,64}")  # fullmatch: "$" also took a trailing \n


@dataclass(frozen=True)
class ConsoleSession:
    """A signed-in browser: who it acts as and the CSRF token its unsafe calls must carry."""

    session_id: str
    principal: Principal
    csrf_token: str
    expires_at: float

    def csrf_matches(self, presented: str | None) -> bool:
        if not presented:
            return False
        # bytes: compare_digest refuses non-ASCII str, and any header value may be non-ASCII
        return hmac.compare_digest(
            presented.encode("utf-8", "surrogatepass"), self.csrf_token.encode()
        )


class ConsoleSessions:
    """Create, resolve and end console sessions in Redis."""

    def __init__(self, redis: Any, *, ttl_s: int = keys.CONSOLE_SESSION_TTL_S) -> None:
        self.redis = redis
        self.ttl_s = ttl_s

    async def create(self, principal: Principal) -> ConsoleSession:
        """A new session for a verified key's principal."""
        session_id = secrets.token_urlsafe(32)
        csrf_token = secrets.token_urlsafe(32)
        expires_at = time.time() + self.ttl_s
        record = {
            "key_id": principal.key_id,
            "tenant": principal.tenant,
            "role": principal.role,
            "csrf": csrf_token,
            "expires_at": f"{expires_at:.3f}",
        }
        await self.redis.transaction(
            ("HSET", keys.console_session(session_id), *[x for kv in record.items() for x in kv]),
            ("EXPIRE", keys.console_session(session_id), self.ttl_s),
        )
        return ConsoleSession(session_id, principal, csrf_token, expires_at)

    async def resolve(self, session_id: str | None) -> ConsoleSession | None:
        """The live session behind a cookie value, or None (unknown, expired, key revoked)."""
        if not session_id or not _SESSION_ID.fullmatch(session_id):
            return None
        rec = await self.redis.hgetall(keys.console_session(session_id))
        if not rec or rec.get("role") not in ROLES:
            return None
        key_id = rec.get("key_id", "")
        # the key must still be live: revoking it ends its console sessions at once
        owner, revoked, rpm = await self.redis.hmget(
            keys.api_key(key_id), ["tenant", "revoked", "rpm"]
        )
        if owner != rec.get("tenant") or revoked != "0":
            return None
        principal = Principal(
            key_id=key_id,
            tenant=rec["tenant"],
            role=rec["role"],
            rpm=int(rpm) if rpm and rpm.isdigit() else None,
        )
        return ConsoleSession(
            session_id, principal, rec.get("csrf", ""), float(rec.get("expires_at", 0))
        )

    async def end(self, session_id: str) -> None:
        """Sign out: the session id stops working everywhere."""
        if _SESSION_ID.fullmatch(session_id):
            await self.redis.delete(keys.console_session(session_id))
