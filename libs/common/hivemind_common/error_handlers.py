"""Map the error tree to the wire formats.

Native routes answer RFC 9457 ``application/problem+json``; the OpenAI-compatible routes answer
OpenAI's ``{"error": {message, type, param, code}}`` envelope and the Messages routes Anthropic's,
and their validation errors are 400. Which route speaks which is declared by its router
(:mod:`hivemind_common.wire`), never listed here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis import exceptions as redis_errors
from starlette.exceptions import HTTPException as StarletteHTTPException

from hivemind_common.errors import Conflict, HivemindError, Timeout, Unavailable
from hivemind_common.wire import RouteWires, Wire

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def anthropic_error_body(status: int, message: str) -> dict[str, Any]:
    """The body Anthropic's clients parse into an ``APIStatusError``."""
    kind = _ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def openai_error_body(
    status: int, message: str, *, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """The body OpenAI's clients parse into an ``APIError``."""
    kind = _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def problem_body(
    status: int, title: str, detail: str, *, code: str, instance: str, **extra: Any
) -> dict[str, Any]:
    """An RFC 9457 problem document."""
    body: dict[str, Any] = {
        "type": f"https://hivemind.dev/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "instance": instance,
    }
    body.update(extra)
    return body


def error_response(
    request: Request,
    status: int,
    *,
    title: str,
    message: str,
    code: str,
    param: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
    wire: Wire = "native",
) -> JSONResponse:
    """Shape one error in the format of the route the request went to."""
    if wire == "anthropic":
        return JSONResponse(
            anthropic_error_body(status, message), status_code=status, headers=headers
        )
    if wire == "openai":
        return JSONResponse(
            openai_error_body(status, message, code=code, param=param),
            status_code=status,
            headers=headers,
        )
    return JSONResponse(
        problem_body(status, title, message, code=code, instance=request.url.path, **(extra or {})),
        status_code=status,
        headers=headers,
        media_type=PROBLEM_JSON,
    )


def hivemind_error_response(
    request: Request,
    exc: HivemindError,
    *,
    wire: Wire = "native",
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The answer to one of our errors, in the format of its route (a 5xx is logged);
    ``headers`` are added to the error's own."""
    if exc.status >= 500:
        log.warning("request failed: %s %s", exc.code, exc.message)
    return error_response(
        request,
        exc.status,
        title=exc.title,
        message=exc.message,
        code=exc.code,
        param=exc.param,
        headers={**(exc.headers or {}), **headers} if headers else exc.headers,
        extra=exc.extra,
        wire=wire,
    )


MAX_LISTED_ERRORS = 20  # in a problem's ``errors``; the rest are counted in the message


def _describe_validation(errors: Sequence[Any]) -> tuple[str, str | None, list[dict[str, Any]]]:
    cleaned: list[dict[str, Any]] = []
    for err in errors[:MAX_LISTED_ERRORS]:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body",)]
        if err.get("type") == "invalid_text":  # found by a walk over the whole input
            field = str((err.get("ctx") or {}).get("field", ""))
            loc += [p for p in field.split(".") if p]
            err = {**err, "msg": str((err.get("ctx") or {}).get("problem", err.get("msg", "")))}
        cleaned.append({"loc": loc, "msg": str(err.get("msg", "")), "type": err.get("type")})
    if not cleaned:
        return "Invalid request body", None, cleaned
    first = cleaned[0]
    where = ".".join(first["loc"]) or "body"
    msg = f"{where}: {first['msg']}"
    if len(errors) > 1:
        msg += f" (and {len(errors) - 1} more)"
    return msg, (".".join(first["loc"]) or None), cleaned


def from_redis_error(exc: redis_errors.RedisError) -> HivemindError:
    """Ours for a Redis error that reached a request's boundary (never a bare 500).

    A store that is away, busy, full or failing over is a 503 (504 on a timeout); any other
    error reply (``WRONGTYPE``, a refused script, a write conflict) means the stored data cannot
    take this request: a 409. Decided by the error's class, never by its message.
    """
    if isinstance(exc, redis_errors.TimeoutError):
        return Timeout("the data store did not answer in time", code="store_timeout")
    if isinstance(exc, redis_errors.OutOfMemoryError):
        return Unavailable(
            "the data store is full", code="store_full", headers={"Retry-After": "5"}
        )
    unavailable = (
        redis_errors.ConnectionError,
        redis_errors.ReadOnlyError,
        redis_errors.ClusterDownError,
        redis_errors.TryAgainError,
    )
    refused = (redis_errors.ResponseError, redis_errors.WatchError)
    if isinstance(exc, unavailable) or not isinstance(exc, refused):
        return Unavailable(
            "the data store is not available",
            code="store_unavailable",
            headers={"Retry-After": "1"},
        )
    return Conflict(
        "the stored data cannot take this operation (the data store refused it)",
        code="store_conflict",
    )


def install_error_handlers(app: FastAPI, *, wires: RouteWires | None = None) -> None:
    """Register handlers so that no input ever produces a bare 500 or a foreign format."""
    route_wires = wires or RouteWires(app)

    def wire(request: Request) -> Wire:
        return route_wires(request.url.path, request.method)

    async def on_hivemind(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HivemindError)
        return hivemind_error_response(request, exc, wire=wire(request))

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        message, param, cleaned = _describe_validation(exc.errors())
        status = 400 if wire(request) != "native" else 422
        return error_response(
            request,
            status,
            title="Invalid request",
            message=message,
            code="invalid_request",
            param=param,
            extra={"errors": cleaned},
            wire=wire(request),
        )

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else "HTTP error"
        codes = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}
        return error_response(
            request,
            exc.status_code,
            title=detail,
            message=detail,
            code=codes.get(exc.status_code, "http_error"),
            headers=dict(exc.headers or {}),
            wire=wire(request),
        )

    async def on_redis(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, redis_errors.RedisError)
        log.warning("redis error on %s: %s", request.url.path, type(exc).__name__)
        return await on_hivemind(request, from_redis_error(exc))

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path, exc_info=exc)
        return error_response(
            request,
            500,
            title="Internal error",
            message="Internal error; see the service log",
            code="internal_error",
            wire=wire(request),
        )

    app.add_exception_handler(HivemindError, on_hivemind)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(redis_errors.RedisError, on_redis)
    app.add_exception_handler(Exception, on_unexpected)
