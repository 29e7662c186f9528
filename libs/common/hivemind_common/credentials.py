"""A request that carries no credentials at all is refused before its body is read.

FastAPI parses a route's body before its dependencies run, so without this layer an
unauthenticated client could still make the service read and parse a body up to the route's cap
before the 401. Only the *presence* of a key is checked here (cheap, no Redis); the key itself is
verified by the route's own dependency as before.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hivemind_common.error_handlers import error_response
from hivemind_common.errors import Unauthorized
from hivemind_common.wire import RouteWires

_KEY_HEADERS = (b"authorization", b"x-api-key")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})  # what FastAPI would read and parse


class CredentialsRequiredMiddleware:
    """401 at once for a request with a body to a guarded path that sends no key in any
    accepted header (a GET has nothing to parse: its route answers 401, or 404, as before)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        guarded: Callable[[str], bool],
        wires: RouteWires | None = None,
        session_cookie: str | None = None,
    ) -> None:
        self.app = app
        self.guarded = guarded
        self.wires = wires
        # a service's own session cookie (the gateway's console) also counts as credentials
        self.cookie = f"{session_cookie}=".encode() if session_cookie else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in _BODY_METHODS
            or not self.guarded(scope["path"])
        ):
            await self.app(scope, receive, send)
            return
        if any(self._credential(name, value) for name, value in scope["headers"]):
            await self.app(scope, receive, send)
            return
        wire = self.wires(scope["path"], scope["method"]) if self.wires else "native"
        how = "'x-api-key: <key>' or " if wire == "anthropic" else ""
        err = Unauthorized(f"missing API key: send {how}'Authorization: Bearer <key>'")
        response = error_response(
            Request(scope),
            err.status,
            title=err.title,
            message=err.message,
            code=err.code,
            headers={"WWW-Authenticate": "Bearer", "connection": "close"},
            wire=wire,
        )
        await response(scope, _no_body, send)

    def _credential(self, name: bytes, value: bytes) -> bool:
        if name in _KEY_HEADERS:
            return bool(value.strip())
        if name == b"cookie" and self.cookie is not None:
            return any(part.strip().startswith(self.cookie) for part in value.split(b";"))
        return False


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


__all__ = ["CredentialsRequiredMiddleware"]
