"""The console's cookie as a credential for ``/v1``: the hook ``require_role`` calls when a
request sends no API key (``app.state.session_auth``).

The console's pages call the public API with the browser's session cookie, so the API's own
role and tenant checks apply unchanged. A state-changing call (any method but GET, HEAD and
OPTIONS) authenticated by the cookie must also send the session's CSRF token in
``X-CSRF-Token``; SameSite=Strict already keeps the cookie off other sites' requests, and the
token makes a forged same-site request fail as well.
"""

from __future__ import annotations

from starlette.requests import Request

from hivemind_common.auth import Principal
from hivemind_common.errors import Forbidden
from hivemind_gateway.console.sessions import (
    COOKIE_NAME,
    CSRF_HEADER,
    SAFE_METHODS,
    ConsoleSession,
    ConsoleSessions,
)


async def current_session(request: Request) -> ConsoleSession | None:
    """The live console session of the request's cookie, or None."""
    cookie = request.cookies.get(COOKIE_NAME)
    if not cookie:
        return None
    return await ConsoleSessions(request.app.state.redis).resolve(cookie)


def check_csrf(request: Request, session: ConsoleSession, presented: str | None) -> None:
    """Forbidden unless a state-changing request carries the session's CSRF token."""
    if request.method in SAFE_METHODS:
        return
    if not session.csrf_matches(presented):
        raise Forbidden(
            "CSRF token missing or wrong: a console call that changes state sends the "
            "session's token in X-CSRF-Token",
            code="csrf_failed",
        )


async def session_principal(request: Request) -> Principal | None:
    """The principal of a console cookie (None: no live session, so the caller gets 401)."""
    session = await current_session(request)
    if session is None:
        return None
    check_csrf(request, session, request.headers.get(CSRF_HEADER))
    return session.principal
