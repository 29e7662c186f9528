"""Routes of the web console: sign-in and sign-out, and one server-rendered page per surface.

Pages are shells rendered here with the caller's role and tenant; the data on them and every
action come from the public ``/v1`` API, called by ``static/console.js`` with the session cookie
(see :mod:`hivemind_gateway.console.auth`), so the API's own checks decide what a key may see
and do. Controls a role may not use are not rendered, and the API refuses them anyway.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from hivemind_common.auth import ApiKeyStore
from hivemind_common.errors import Forbidden, NotFound, Unauthorized
from hivemind_gateway import __version__
from hivemind_gateway.console.auth import check_csrf, current_session, session_principal
from hivemind_gateway.console.calculator import calculator_context
from hivemind_gateway.console.headers import PAGE_HEADERS
from hivemind_gateway.console.pages import BY_SLUG, pages_for
from hivemind_gateway.console.sessions import (
    COOKIE_NAME,
    CSRF_FIELD,
    ConsoleSessions,
)

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(prefix="/console", include_in_schema=False)
MAX_KEY_CHARS = 256


def install_console(app: FastAPI) -> None:
    """Serve the console at ``/console`` and let its cookie authenticate ``/v1`` calls."""
    app.state.session_auth = session_principal
    app.include_router(router)
    app.mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static")


def _render(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> Response:
    context = {"version": __version__, "csrf_field": CSRF_FIELD, **context}
    return templates.TemplateResponse(
        request, template, context, status_code=status_code, headers=PAGE_HEADERS
    )


def _same_origin(request: Request) -> None:
    """A form post must come from a console page of this gateway (a login-CSRF guard)."""
    origin = request.headers.get("origin")
    if origin is None:
        origin = request.headers.get("referer")
        if origin is None:
            return  # a client that sends neither is not a browser on another site
    # an opaque origin ("null": a sandboxed frame, a data: page) is another site, never ours
    try:
        parts = urlsplit(origin)
    except ValueError:  # "http://[::1": not a URL, so not this console
        raise Forbidden("a console form must be posted from the console itself") from None
    if (parts.scheme, parts.netloc) != (request.url.scheme, request.url.netloc):
        raise Forbidden("a console form must be posted from the console itself")


def _cookie_flags(request: Request) -> dict[str, Any]:
    """The session cookie's attributes: sent on every path (the console's /v1 calls too),
    never readable by scripts, never sent by another site, and Secure over https."""
    return {
        "path": "/",
        "httponly": True,
        "samesite": "strict",
        "secure": request.url.scheme == "https",
    }


async def _form_field(request: Request, name: str, limit: int) -> str:
    form = await request.form(max_files=0, max_fields=8)
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


@router.get("")
async def console_root(request: Request) -> Response:
    session = await current_session(request)
    target = "/console/overview" if session else "/console/signin"
    return RedirectResponse(target, status_code=303, headers=PAGE_HEADERS)


@router.get("/signin")
async def signin_form(request: Request) -> Response:
    if await current_session(request):
        return RedirectResponse("/console/overview", status_code=303, headers=PAGE_HEADERS)
    return _render(request, "signin.html", {"error": None})


@router.post("/signin")
async def signin(request: Request) -> Response:
    """Exchange an API key for a session cookie; the key is checked once and never kept."""
    _same_origin(request)
    key = await _form_field(request, "api_key", MAX_KEY_CHARS)
    store: ApiKeyStore = request.app.state.api_keys
    if not key:
        return _render(request, "signin.html", {"error": "enter an API key"}, status_code=401)
    try:
        principal = await store.verify(key)
    except Unauthorized as exc:  # a store that does not answer stays a 503, not a wrong key
        return _render(request, "signin.html", {"error": exc.message}, status_code=401)
    sessions = ConsoleSessions(request.app.state.redis)
    previous = request.cookies.get(COOKIE_NAME)
    if previous:  # a new sign-in replaces the browser's old session, never shares an id
        await sessions.end(previous)
    session = await sessions.create(principal)
    response = RedirectResponse("/console/overview", status_code=303, headers=PAGE_HEADERS)
    response.set_cookie(
        COOKIE_NAME, session.session_id, max_age=sessions.ttl_s, **_cookie_flags(request)
    )
    return response


@router.post("/signout")
async def signout(request: Request) -> Response:
    """End the session (the form carries the CSRF token) and clear the cookie."""
    _same_origin(request)
    session = await current_session(request)
    if session is not None:
        check_csrf(request, session, await _form_field(request, CSRF_FIELD, 128))
        await ConsoleSessions(request.app.state.redis).end(session.session_id)
    response = RedirectResponse("/console/signin", status_code=303, headers=PAGE_HEADERS)
    response.delete_cookie(COOKIE_NAME, **_cookie_flags(request))
    return response


@router.get("/{slug}")
async def page(slug: str, request: Request) -> Response:
    """One console page, for a signed-in browser whose role may open it."""
    page = BY_SLUG.get(slug)
    if page is None:
        raise NotFound(f"no console page {slug!r}")
    session = await current_session(request)
    if session is None:
        return RedirectResponse("/console/signin", status_code=303, headers=PAGE_HEADERS)
    principal = session.principal
    context: dict[str, Any] = {
        "page": page,
        "pages": pages_for(principal),
        "principal": principal,
        "csrf_token": session.csrf_token,
        "can_write": principal.allows("write"),
        "is_admin": principal.allows("admin"),
        "is_operator": principal.is_operator,
    }
    if not principal.allows(page.role):
        return _render(request, "forbidden.html", context, status_code=403)
    if slug == "calculator":
        context.update(calculator_context(request.query_params))
    return _render(request, f"{slug}.html", context)
