"""The one exception tree of Hive-Mind.

Every error a caller may see is a ``HivemindError``: it carries the HTTP status, a short
machine code and a human message. Foreign errors (redis, httpx, llama_cpp, torch) are caught at
the boundary and re-raised as one of these with ``from exc``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

_F = TypeVar("_F", bound=Callable[..., Any])


class HivemindError(Exception):
    """Base of every error Hive-Mind raises on purpose."""

    status: int = 500
    code: str = "internal_error"
    title: str = "Internal error"

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.message = message or self.title
        if code is not None:
            self.code = code
        self.param = param
        self.headers = headers or {}
        self.extra = extra or {}
        super().__init__(self.message)


class Invalid(HivemindError):
    status = 400
    code = "invalid_request"
    title = "Invalid request"


def shape_errors_are_invalid(convert: _F) -> _F:
    """Wrap a converter of a request body: a part of the wrong shape deep inside it (a list
    where an object belongs, a number where text belongs) is the caller's 400, never a 500."""

    @functools.wraps(convert)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return convert(*args, **kwargs)
        except (AttributeError, TypeError, KeyError, IndexError) as exc:
            raise Invalid(
                f"the request body has a part of the wrong shape ({type(exc).__name__}: {exc})"
            ) from exc

    return wrapped  # type: ignore[return-value]


def part_text(part: Any, field: str, where: str) -> str:
    """A content part's text field: a string, or absent (empty). ``null``, a number or an
    object is the caller's 400; ``str()`` of it sent the model "None" or a Python repr."""
    value = part.get(field, "")
    if not isinstance(value, str):
        raise Invalid(f"{field} must be a string", param=f"{where}.{field}")
    return value


class Unauthorized(HivemindError):
    status = 401
    code = "unauthorized"
    title = "Missing or unknown API key"


class Forbidden(HivemindError):
    status = 403
    code = "forbidden"
    title = "Not allowed for this key"


class QuotaExceeded(Forbidden):
    """A tenant's quota (facts, memories, cache bytes) would be exceeded by a new item."""

    code = "quota_exceeded"
    title = "Tenant quota exceeded"


class NotFound(HivemindError):
    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(HivemindError):
    status = 409
    code = "conflict"
    title = "Conflict"


class TooLarge(HivemindError):
    status = 413
    code = "payload_too_large"
    title = "Payload too large"


class Unprocessable(HivemindError):
    status = 422
    code = "unprocessable"
    title = "Cannot process this input"


class TooManyRequests(HivemindError):
    status = 429
    code = "rate_limited"
    title = "Too many requests"

    def __init__(self, message: str | None = None, *, retry_after: float = 1.0, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.headers.setdefault("Retry-After", str(max(1, round(retry_after))))


class UpstreamError(HivemindError):
    """A dependency answered with an error we cannot map to the caller's fault."""

    status = 502
    code = "upstream_error"
    title = "Upstream service error"


class Unavailable(HivemindError):
    status = 503
    code = "unavailable"
    title = "Service unavailable"


class Timeout(HivemindError):
    status = 504
    code = "timeout"
    title = "Upstream timed out"


__all__ = [
    "Conflict",
    "Forbidden",
    "HivemindError",
    "Invalid",
    "NotFound",
    "QuotaExceeded",
    "Timeout",
    "TooLarge",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "Unprocessable",
    "UpstreamError",
    "shape_errors_are_invalid",
]
