"""The door of ``/mcp``: a bearer key the gateway accepts, or 401 before any MCP work.

The key is checked by one cheap authenticated gateway read and remembered briefly (by its
SHA-256, never in clear). A definite refusal (401/403) turns the caller away. If the gateway
cannot be asked, a request on an open session goes on and every tool call reports the
gateway's state (the gateway checks the key again on each call, so nothing is reachable without
it); a request that would open a session gets 503 with Retry-After, so that unchecked keys
(any string, while the gateway is away) cannot fill the bridge's session table.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

import httpx
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, authorization_context
from mcp.server.auth.provider import AccessToken
from starlette.types import ASGIApp, Receive, Scope, Send

from hivemind_common.auth import bearer_from_scope
from hivemind_mcp.metrics import KEY_CHECKS

log = logging.getLogger(__name__)

MAX_REMEMBERED = 4096
UNCHECKED_RETRY_S = 5  # Retry-After of a session refused while the gateway cannot check keys


class KeyChecker:
    """Asks the gateway whether a key is good; remembers good keys for ``ttl_s``."""

    def __init__(
        self, http: httpx.AsyncClient | None = None, *, check_path: str, ttl_s: float
    ) -> None:
        self.http = http  # set by the app's lifespan when built before it
        self.check_path = check_path
        self.ttl_s = ttl_s
        self._good_until: dict[str, float] = {}

    async def refusal(self, key: str) -> str | None:
        """None when the key may pass; else the reason it is refused."""
        return (await self.check(key))[0]

    async def check(self, key: str) -> tuple[str | None, bool]:
        """(the reason the key is refused or None, whether the gateway vouched for it: False
        when the gateway could not be asked and the key was not remembered)."""
        if not (key.isascii() and key.isprintable()):
            KEY_CHECKS.labels("refused").inc()
            return "malformed API key", False
        digest = hashlib.sha256(key.encode()).hexdigest()
        now = time.monotonic()
        if self._good_until.get(digest, 0.0) > now:
            KEY_CHECKS.labels("remembered").inc()
            return None, True
        if self.http is None:
            raise RuntimeError("KeyChecker used before its HTTP client was set")
        try:
            response = await self.http.get(
                self.check_path, headers={"Authorization": f"Bearer {key}"}
            )
        except (httpx.HTTPError, ValueError) as exc:  # ValueError: a header httpx cannot send
            log.warning("cannot check an API key, gateway unreachable: %s", type(exc).__name__)
            KEY_CHECKS.labels("unchecked").inc()
            return None, False
        if response.status_code in (401, 403):
            self._good_until.pop(digest, None)
            KEY_CHECKS.labels("refused").inc()
            return "the API key was refused by the gateway", False
        KEY_CHECKS.labels("accepted" if response.is_success else "unchecked").inc()
        if response.is_success:
            if len(self._good_until) >= MAX_REMEMBERED:
                self._good_until = {k: t for k, t in self._good_until.items() if t > now}
            self._good_until[digest] = now + self.ttl_s
        return None, response.is_success

    def forget(self, key: str) -> None:
        """Drop a remembered key (the gateway refused it on a tool call)."""
        self._good_until.pop(hashlib.sha256(key.encode()).hexdigest(), None)


def key_user(key: str) -> AuthenticatedUser:
    """The caller as the MCP SDK knows it: by the key's SHA-256 (never the key), so that a
    session is served only to the key that opened it (another gets 404, as for no session)."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return AuthenticatedUser(AccessToken(token=digest, client_id=digest, scopes=[], subject=digest))


class BearerKeyGate:
    """ASGI wrapper: 401 (JSON-RPC shaped, with WWW-Authenticate) for a missing or refused key,
    429 for a key that holds ``per_key`` open sessions and asks for another."""

    def __init__(
        self, app: ASGIApp, checker: KeyChecker, *, sessions: Any = None, per_key: int = 0
    ) -> None:
        self.app = app
        self.checker = checker
        self.sessions = sessions  # the SDK's session manager, for the per-key count
        self.per_key = per_key
        self._opening: dict[str, int] = {}  # opening requests under way, by key digest

    def _sessions_of(self, user: AuthenticatedUser) -> int:
        owners = getattr(self.sessions, "_session_owners", None)
        if not isinstance(owners, dict):
            return 0
        mine = authorization_context(user)
        return sum(1 for owner in owners.values() if owner == mine)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        key = bearer_from_scope(scope)
        vouched = False
        if key is None:
            KEY_CHECKS.labels("missing").inc()
            reason: str | None = "missing API key: send 'Authorization: Bearer <key>'"
        else:
            reason, vouched = await self.checker.check(key)
        if reason is None and key is not None:
            user = key_user(key)
            opening = scope.get("method") == "POST" and not any(
                name == b"mcp-session-id" for name, _ in scope.get("headers") or []
            )
            if opening and not vouched:  # any string passes while the gateway is away
                await _refuse(send, 503, "the gateway cannot check the API key right now; "
                              "retry shortly", retry_after=UNCHECKED_RETRY_S)  # fmt: skip
                return
            if not (opening and self.per_key):
                await self.app({**scope, "user": user}, receive, send)
                return
            # counted with the openings under way: concurrent ones all passed a plain count
            digest = user.access_token.subject or ""
            if self._sessions_of(user) + self._opening.get(digest, 0) >= self.per_key:
                await _refuse(send, 429, f"this key holds {self.per_key} open MCP sessions; "
                              "close one (DELETE /mcp) or wait for one to go idle")  # fmt: skip
                return
            self._opening[digest] = self._opening.get(digest, 0) + 1
            try:
                await self.app({**scope, "user": user}, receive, send)
            finally:
                left = self._opening.pop(digest, 1) - 1
                if left > 0:
                    self._opening[digest] = left
            return
        await _refuse(send, 401, reason or "missing API key")


async def _refuse(send: Send, status: int, reason: str, *, retry_after: int = 0) -> None:
    body = json.dumps(
        {"jsonrpc": "2.0", "id": None, "error": {"code": -32001, "message": reason}}
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="hivemind"'))
    if retry_after:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
