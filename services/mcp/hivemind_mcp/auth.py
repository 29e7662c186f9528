"""The door of ``/mcp``: a bearer key the gateway accepts, or 401 before any MCP work.

The key is checked by one cheap authenticated gateway read and remembered briefly (by its
SHA-256, never in clear). Only a definite refusal (401/403) turns the caller away; if the
gateway cannot be asked, the request goes on and every tool call reports the gateway's state
(the gateway checks the key again on each call, so nothing is reachable without it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from hivemind_common.auth import bearer_from_scope
from hivemind_mcp.metrics import KEY_CHECKS

log = logging.getLogger(__name__)

MAX_REMEMBERED = 4096


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
        if not (key.isascii() and key.isprintable()):
            KEY_CHECKS.labels("refused").inc()
            return "malformed API key"
        digest = hashlib.sha256(key.encode()).hexdigest()
        now = time.monotonic()
        if self._good_until.get(digest, 0.0) > now:
            KEY_CHECKS.labels("remembered").inc()
            return None
        if self.http is None:
            raise RuntimeError("KeyChecker used before its HTTP client was set")
        try:
            response = await self.http.get(
                self.check_path, headers={"Authorization": f"Bearer {key}"}
            )
        except (httpx.HTTPError, ValueError) as exc:  # ValueError: a header httpx cannot send
            log.warning("cannot check an API key, gateway unreachable: %s", type(exc).__name__)
            KEY_CHECKS.labels("unchecked").inc()
            return None
        if response.status_code in (401, 403):
            self._good_until.pop(digest, None)
            KEY_CHECKS.labels("refused").inc()
            return "the API key was refused by the gateway"
        KEY_CHECKS.labels("accepted" if response.is_success else "unchecked").inc()
        if response.is_success:
            if len(self._good_until) >= MAX_REMEMBERED:
                self._good_until = {k: t for k, t in self._good_until.items() if t > now}
            self._good_until[digest] = now + self.ttl_s
        return None

    def forget(self, key: str) -> None:
        """Drop a remembered key (the gateway refused it on a tool call)."""
        self._good_until.pop(hashlib.sha256(key.encode()).hexdigest(), None)


class BearerKeyGate:
    """ASGI wrapper: 401 (JSON-RPC shaped, with WWW-Authenticate) for a missing or refused key."""

    def __init__(self, app: ASGIApp, checker: KeyChecker) -> None:
        self.app = app
        self.checker = checker

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        key = bearer_from_scope(scope)
        if key is None:
            KEY_CHECKS.labels("missing").inc()
            reason: str | None = "missing API key: send 'Authorization: Bearer <key>'"
        else:
            reason = await self.checker.refusal(key)
        if reason is None:
            await self.app(scope, receive, send)
            return
        body = json.dumps(
            {"jsonrpc": "2.0", "id": None, "error": {"code": -32001, "message": reason}}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="hivemind"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
