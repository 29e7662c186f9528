"""Calls to the inference and embedding services, with their errors mapped to ours.

An upstream 4xx keeps its status, message, code and param (the caller's fault stays the
caller's); 429 and 503 keep ``Retry-After``; other upstream failures become 502/503/504.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import orjson

from hivemind_common.errors import HivemindError, Timeout, Unavailable, UpstreamError
from hivemind_common.json_codec import dumps

VERSION_HEADER = "x-hivemind-model-version"
_PASSED_HEADERS = ("retry-after",)
_JSON = {"content-type": "application/json"}

__all__ = ["VERSION_HEADER", "UpstreamRefused", "dumps", "post_json", "post_raw"]


class UpstreamRefused(HivemindError):
    """An upstream 4xx, passed on with its own status."""


def error_from_response(
    service: str, status: int, headers: httpx.Headers, raw: bytes
) -> HivemindError:
    """Our error for an upstream error response."""
    message, code, param = f"{service} answered {status}", None, None
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        body = {}
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            message = str(err.get("message") or message)
            code, param = err.get("code"), err.get("param")
        elif isinstance(body.get("detail"), str):
            message, code = body["detail"], body.get("code")
    passed = {k: headers[k] for k in _PASSED_HEADERS if k in headers}
    if 400 <= status < 500:
        exc: HivemindError = UpstreamRefused(message, code=code, param=param, headers=passed)
        exc.status = status
        return exc
    if status == 503:
        return Unavailable(f"{service} is unavailable: {message}", headers=passed)
    return UpstreamError(f"{service} failed: {message}")


def _transport_error(service: str, exc: httpx.HTTPError) -> HivemindError:
    if isinstance(exc, httpx.TimeoutException):
        return Timeout(f"{service} did not answer in time")
    return Unavailable(f"{service} cannot be reached ({type(exc).__name__})")


async def post_raw(
    client: httpx.AsyncClient,
    service: str,
    path: str,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> tuple[bytes, httpx.Headers]:
    """POST JSON, return (the JSON answer as it came, headers); raise ours on any failure.

    The answer is not parsed: a caller that only passes it on sends these bytes as they are.
    """
    try:
        resp = await client.post(path, content=dumps(body), headers={**_JSON, **(headers or {})})
    except httpx.HTTPError as exc:
        raise _transport_error(service, exc) from exc
    if resp.status_code >= 400:
        raise error_from_response(service, resp.status_code, resp.headers, resp.content)
    return resp.content, resp.headers


def parse_json(service: str, raw: bytes) -> dict[str, Any]:
    """An upstream answer parsed, or our 502."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError(f"{service} answered something that is not JSON") from exc
    if not isinstance(data, dict):
        raise UpstreamError(f"{service} answered JSON that is not an object")
    return data


async def post_json(
    client: httpx.AsyncClient, service: str, path: str, body: dict[str, Any]
) -> tuple[dict[str, Any], httpx.Headers]:
    """POST JSON, return (JSON body, headers); raise ours on any failure."""
    raw, headers = await post_raw(client, service, path, body)
    return parse_json(service, raw), headers


async def get_json(client: httpx.AsyncClient, service: str, path: str) -> dict[str, Any]:
    try:
        resp = await client.get(path)
    except httpx.HTTPError as exc:
        raise _transport_error(service, exc) from exc
    if resp.status_code >= 400:
        raise error_from_response(service, resp.status_code, resp.headers, resp.content)
    return resp.json()  # type: ignore[no-any-return]


async def open_stream(
    client: httpx.AsyncClient,
    service: str,
    path: str,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """Start a streamed POST; errors before the first byte raise ours. The caller closes it."""
    request = client.build_request(
        "POST", path, content=dumps(body), headers={**_JSON, **(headers or {})}
    )
    try:
        resp = await client.send(request, stream=True)
    except httpx.HTTPError as exc:
        raise _transport_error(service, exc) from exc
    if resp.status_code >= 400:
        try:
            raw = await resp.aread()
        finally:
            await resp.aclose()
        raise error_from_response(service, resp.status_code, resp.headers, raw)
    return resp


def transport_error(service: str, exc: httpx.HTTPError) -> HivemindError:
    """Public twin of the mapping, for failures in the middle of a stream."""
    return _transport_error(service, exc)
