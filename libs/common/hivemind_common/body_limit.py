"""Request body caps, enforced before anything parses a body: a pure ASGI layer.

FastAPI reads and parses a body before any dependency runs, so a cap checked in a route or a
dependency comes too late. This layer sits in front of the app:

- a ``Content-Length`` over the route's cap is answered 413 at once, and the body is never read
  (the server stops reading when nobody asks for more);
- a body without a length (chunked) is counted as the app reads it; past the cap the app's read
  fails, whatever the app answers is dropped, and the caller gets the 413 instead.

The 413 closes the connection and speaks the route's wire format (the error handlers' own
shaping): problem+json on native routes, OpenAI's or Anthropic's envelope on theirs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hivemind_common.error_handlers import error_response
from hivemind_common.errors import TooLarge
from hivemind_common.wire import RouteWires

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024  # services that name no caps of their own


@dataclass(frozen=True)
class BodyLimits:
    """The cap of each route: the longest matching path prefix wins, else ``default``."""

    default: int = DEFAULT_MAX_BODY_BYTES
    routes: tuple[tuple[str, int], ...] = field(default=())

    @classmethod
    def of(cls, default: int, routes: Iterable[tuple[str, int]] = ()) -> BodyLimits:
        ordered = sorted(routes, key=lambda pair: len(pair[0]), reverse=True)
        return cls(default=default, routes=tuple(ordered))

    def cap_for(self, path: str) -> int:
        """Bytes a body sent to ``path`` may have."""
        for prefix, cap in self.routes:
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                return cap
        return self.default


class BodyTooLarge(TooLarge):
    """Raised into the app when a body it reads grows past the cap."""


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


class BodyLimitMiddleware:
    """Refuse bodies over the route's cap before they are read (or as soon as they pass it)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limits: BodyLimits | None = None,
        wires: RouteWires | None = None,
    ) -> None:
        self.app = app
        self.limits = limits or BodyLimits()
        self.wires = wires

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.limits.cap_for(scope["path"])
        declared = _declared_length(scope)
        if declared is not None and declared > cap:
            await self._refuse(scope, send, f"body is {declared} bytes; the limit is {cap}")
            return

        seen = 0
        over = False
        started = False

        async def counted_receive() -> Message:
            nonlocal seen, over
            if over:  # the app asked again after the cap: nothing more is read
                raise BodyTooLarge(f"body is over the limit of {cap} bytes")
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > cap:
                    over = True
                    raise BodyTooLarge(f"body is over the limit of {cap} bytes")
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over and not started:
                return  # the app's answer to a body it could not read: ours goes instead
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not over or started:
                raise
        if over and not started:
            await self._refuse(scope, send, f"body is over the limit of {cap} bytes")

    async def _refuse(self, scope: Scope, send: Send, message: str) -> None:
        err = TooLarge(message)
        response = error_response(
            Request(scope),
            err.status,
            title=err.title,
            message=err.message,
            code=err.code,
            headers={"connection": "close"},
            wire=self.wires(scope["path"], scope["method"]) if self.wires else "native",
        )
        await response(scope, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


__all__ = ["DEFAULT_MAX_BODY_BYTES", "BodyLimitMiddleware", "BodyLimits", "BodyTooLarge"]
