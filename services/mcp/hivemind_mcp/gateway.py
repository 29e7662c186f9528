"""The bridge's one way out: typed calls to the gateway, failures turned into tool errors.

Every tool is a thin call through :class:`GatewayClient`. Whatever goes wrong on the way (the
gateway refuses the key, the fact does not exist, the gateway is down or slow) comes back as a
:class:`~mcp.server.mcpserver.exceptions.ToolError` with a plain message the model can act on;
nothing here lets an exception crash the server.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
from mcp.server.mcpserver.exceptions import ToolError

from hivemind_common.json_codec import dumps
from hivemind_common.text import find_bad_string

log = logging.getLogger(__name__)

# What the model is told for each refusal; the gateway's own detail follows it.
_STATUS_HINTS = {
    400: "invalid input",
    401: "the API key was refused",
    403: "this API key's role (or its tenant's quota) does not allow that",
    404: "not found",
    409: "conflict",
    413: "input too large",
    422: "invalid input",
    429: "rate limited, try again shortly",
}


def path_segment(value: str) -> str:
    """Quote one path segment so a key like ``a/b`` or ``..`` stays inside its route."""
    # Dots alone would be dot-segments that URL normalisation removes (``/v1/facts/..``
    # is ``/v1``); percent-encoded they are plain data.
    quoted = quote(value, safe="")
    return quoted.replace(".", "%2E") if not value.strip(".") else quoted


def error_detail(response: httpx.Response) -> str:
    """The human message of a problem+json or OpenAI error body, else a short text excerpt."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300]
    if isinstance(body, dict):
        if isinstance(body.get("error"), dict):
            return str(body["error"].get("message") or "")[:500]
        for field in ("detail", "message", "title"):
            value = body.get(field)
            if isinstance(value, str) and value:
                return value[:500]
            if isinstance(value, list) and value:  # FastAPI's plain validation list
                first = value[0]
                if isinstance(first, dict):
                    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
                    return f"{where}: {first.get('msg', '')}".strip(": ")[:500]
    return str(body)[:300]


def refusal_message(response: httpx.Response) -> str:
    """A plain sentence for a non-2xx gateway answer."""
    status = response.status_code
    detail = error_detail(response)
    if status >= 500:
        hint = "the Hive-Mind gateway failed"
    else:
        hint = _STATUS_HINTS.get(status, "the request was refused")
    retry = response.headers.get("retry-after", "")
    if status in (429, 503) and retry.isdigit():
        hint += f"; retry after {retry} s"
    return f"{hint} (HTTP {status}): {detail}" if detail else f"{hint} (HTTP {status})"


class GatewayClient:
    """Calls the gateway with the caller's API key; one pooled HTTP client for all callers."""

    def __init__(
        self, http: httpx.AsyncClient, *, on_refused_key: Callable[[str], None] | None = None
    ) -> None:
        self.http = http
        self.on_refused_key = on_refused_key

    @property
    def base_url(self) -> str:
        """The gateway's URL for messages: without a user or password it may carry."""
        url = self.http.base_url.copy_with(username=None, password=None)
        return str(url).rstrip("/")

    async def call(
        self,
        method: str,
        path: str,
        *,
        api_key: str,
        json: Any = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        """One gateway request; the decoded JSON body (None for an empty one), or ToolError."""
        headers = {"Authorization": f"Bearer {api_key}"}
        clean_params = {k: v for k, v in (params or {}).items() if v is not None}
        # every tool's text is checked here, on its one way out, so a new tool cannot forget
        bad = find_bad_string(json) or find_bad_string(clean_params)
        if bad is not None:
            where, problem = bad
            raise ToolError(f"invalid input: {where or 'value'}: {problem}")
        content = None
        if json is not None:
            content = dumps(json)
            headers["Content-Type"] = "application/json"
        try:
            response = await self.http.request(
                method, path, content=content, params=clean_params or None, headers=headers
            )
        except httpx.TimeoutException as exc:
            raise ToolError(
                f"the Hive-Mind gateway at {self.base_url} did not answer in time; try again"
            ) from exc
        except httpx.HTTPError as exc:
            log.warning("gateway unreachable: %s", type(exc).__name__)
            raise ToolError(
                f"the Hive-Mind gateway at {self.base_url} is unreachable "
                f"({type(exc).__name__}); is it running?"
            ) from exc
        except ValueError as exc:  # a key httpx cannot send as a header (not ASCII, a newline)
            raise ToolError(
                "the API key cannot be sent (it must be printable ASCII): check HIVEMIND_API_KEY"
            ) from exc
        if response.status_code >= 400:
            if response.status_code == 401 and self.on_refused_key is not None:
                self.on_refused_key(api_key)
            raise ToolError(refusal_message(response))
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise ToolError("the Hive-Mind gateway answered with something not JSON") from exc
