"""Errors of the client, one class per kind of problem the gateway answers (problem+json)."""

from __future__ import annotations

from typing import Any

import httpx


class HivemindError(Exception):
    """Base of every error the client raises."""

    status: int = 0

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        code: str = "",
        problem: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status or self.status
        self.code = code
        self.problem = problem or {}


class TransportError(HivemindError):
    """The gateway could not be reached (connection refused, timeout, broken response)."""


class BadRequest(HivemindError):
    status = 400


class Unauthorized(HivemindError):
    status = 401


class Forbidden(HivemindError):
    status = 403


class QuotaExceeded(Forbidden):
    """A tenant's quota is full (403 ``quota_exceeded``): waiting does not help."""


class NotFound(HivemindError):
    status = 404


class Conflict(HivemindError):
    status = 409


class TooLarge(HivemindError):
    status = 413


class RateLimited(HivemindError):
    status = 429

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class ServerError(HivemindError):
    status = 500


class Unavailable(ServerError):
    status = 503


_BY_STATUS: dict[int, type[HivemindError]] = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict,
    413: TooLarge, 422: BadRequest, 429: RateLimited, 502: Unavailable, 503: Unavailable,
    504: Unavailable,
}  # fmt: skip


def retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after")
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None


def from_response(response: httpx.Response) -> HivemindError:
    """The error a non-2xx answer stands for, from its problem+json body when it has one."""
    problem: dict[str, Any] = {}
    try:
        body = response.json()
        if isinstance(body, dict):
            inner = body.get("error")  # OpenAI's envelope on the OpenAI-compatible routes
            problem = inner if isinstance(inner, dict) else body
    except ValueError:
        pass
    message = str(problem.get("detail") or problem.get("message") or problem.get("title") or "")
    message = message or f"HTTP {response.status_code}"
    code = str(problem.get("code") or "")
    status = response.status_code
    if status == 403 and code == "quota_exceeded":
        return QuotaExceeded(message, status=status, code=code, problem=problem)
    if status == 429:
        return RateLimited(
            message, retry_after=retry_after(response), status=status, code=code, problem=problem
        )
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else HivemindError)
    return cls(message, status=status, code=code, problem=problem)
