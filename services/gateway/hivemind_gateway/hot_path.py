"""The hottest memory routes answered beside the framework rather than through it.

Issue 17's profile of the gateway under ``wrk`` found the time of a fact lookup spread over the
request machinery (Starlette's and FastAPI's layers, routing, dependency solving, response
validation), not over the work: a bare ASGI app doing the same Redis read answers ~5x as many
requests on this machine. This layer, outermost in the gateway, takes

* ``GET /v1/facts/{key}``,
* ``PUT /v1/sessions/{id}/context``,
* ``POST /v1/memories/search`` and ``POST /v1/rag/context`` (a search's CPU is mostly its
  scoring, but the framework's share of it was ~20% under ``wrk``; the search routes' p50 at 16
  connections is issue 17's third target)

(a body: JSON of declared length, valid for the route)

when the request carries a bearer key, and runs the very functions the route runs, in the same
order: the body's model -> ``ApiKeyStore.verify`` (the in-process key cache) ->
``RequestLimiter.check`` (the rates) -> the role -> the route's own endpoint function -> its JSON.
Its errors go out through ``error_response``, the function the app's own handlers use, so a 401,
403, 404, 429 or 503 reads exactly as before.

What it cannot answer the same way it hands to the app untouched (a body it read is replayed):
no bearer key (the console's cookie, or none at all), a path parameter that fails the route's
pattern, a body that is not JSON of a declared length within the route's cap or that the model
refuses (the framework's 413 or 422), a process still starting. Request ids and the request
metrics (count and latency under the route's own template) are kept as
``RequestContextMiddleware`` keeps them. ``HIVEMIND_GATEWAY_HOT_PATH=false`` turns it off.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.exceptions as redis_errors
from pydantic import BaseModel
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hivemind_common.auth import Principal, Role, parse_bearer
from hivemind_common.error_handlers import from_redis_error, hivemind_error_response
from hivemind_common.errors import Forbidden, HivemindError
from hivemind_common.ids import valid_fact_key, valid_id
from hivemind_common.observability import (
    HTTP_LATENCY,
    HTTP_REQUESTS,
    REQUEST_ID_OK,
    request_id_var,
)
from hivemind_gateway.facts import router as facts_routes
from hivemind_gateway.memory import router as memory_routes
from hivemind_gateway.memory.schemas import MemorySearch, SessionContext
from hivemind_gateway.rag import router as rag_routes
from hivemind_gateway.rag.schemas import RagQuery

log = logging.getLogger(__name__)

_JSON = [(b"content-type", b"application/json")]
HOT_BODY_BYTES = 1 << 20  # a larger body (or none declared) goes the ordinary way


@dataclass(frozen=True)
class _Route:
    method: str
    template: str  # the app's own route template: the metrics' label
    role: Role
    param: Callable[[str], str | None]  # the path's parameter, or None: not this route
    body: type[BaseModel] | None
    run: Callable[[Any, Principal, str, Any], Awaitable[BaseModel]]


def _fact_key(path: str) -> str | None:
    prefix = "/v1/facts/"
    if not path.startswith(prefix):
        return None
    key = path[len(prefix) :]
    return key if valid_fact_key(key) else None


def _context_session(path: str) -> str | None:
    prefix, suffix = "/v1/sessions/", "/context"
    if not (path.startswith(prefix) and path.endswith(suffix)):
        return None
    session_id = path[len(prefix) : -len(suffix)]
    return session_id if valid_id(session_id) else None


def _exactly(wanted: str) -> Callable[[str], str | None]:
    return lambda path: "" if path == wanted else None


# each runs the route's own endpoint function with what its dependencies would have given it
async def _get_fact(gateway: Any, principal: Principal, key: str, _body: Any) -> BaseModel:
    return await facts_routes.get_fact(key, principal, gateway.redis)


async def _put_context(gateway: Any, principal: Principal, session_id: str, body: Any) -> BaseModel:
    return await memory_routes.put_context(session_id, body, principal, gateway.redis)


async def _search_memories(gateway: Any, principal: Principal, _: str, body: Any) -> BaseModel:
    return await memory_routes.search_memories(body, principal, gateway)


async def _rag_context(gateway: Any, principal: Principal, _: str, body: Any) -> BaseModel:
    return await rag_routes.rag_context(body, principal, gateway)


ROUTES = (
    _Route("GET", "/v1/facts/{key:path}", "read", _fact_key, None, _get_fact),
    _Route(
        "POST",
        "/v1/memories/search",
        "read",
        _exactly("/v1/memories/search"),
        MemorySearch,
        _search_memories,
    ),
    _Route("POST", "/v1/rag/context", "read", _exactly("/v1/rag/context"), RagQuery, _rag_context),
    _Route(
        "PUT",
        "/v1/sessions/{session_id}/context",
        "write",
        _context_session,
        SessionContext,
        _put_context,
    ),
)


class HotReads:
    """Pure ASGI layer: the routes of :data:`ROUTES`, with a bearer key, beside the framework."""

    def __init__(self, app: ASGIApp, *, service: str = "gateway") -> None:
        self.app = app
        self.service = service
        self.limits: Any = None  # the routes' body caps, read from the settings once

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route, param = _match(scope)
        if route is None or param is None:
            await self.app(scope, receive, send)
            return
        # the first of a repeated header, as the app reads it
        auth = rid_raw = declared = kind = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                auth = value if auth is None else auth
            elif name == b"x-request-id":
                rid_raw = value if rid_raw is None else rid_raw
            elif name == b"content-length":
                declared = value if declared is None else declared
            elif name == b"content-type":
                kind = value if kind is None else kind
        token = parse_bearer(auth.decode("latin-1")) if auth is not None else None
        incoming = rid_raw.decode("latin-1") if rid_raw is not None else ""
        length = int(declared) if declared is not None and declared.isdigit() else None
        media = kind.split(b";", 1)[0].strip().lower() if kind is not None else b""
        json_body = media == b"application/json"
        state = getattr(scope.get("app"), "state", None)
        gateway = getattr(state, "gateway", None)
        if token is None or gateway is None:
            await self.app(scope, receive, send)
            return
        body: Any = None
        if route.body is not None:
            if self.limits is None:
                self.limits = gateway.settings.body_limits()
            cap = min(HOT_BODY_BYTES, self.limits.cap_for(scope["path"]))
            if not json_body or length is None or length > cap:
                await self.app(scope, receive, send)
                return
            raw, receive = await _read_body(receive, length)
            body = _model(route.body, raw)
            if body is None:  # the framework answers it (422, 413), as it always has
                await self.app(scope, receive, send)
                return
        rid = incoming if REQUEST_ID_OK.fullmatch(incoming) else uuid.uuid4().hex[:16]
        reset = request_id_var.set(rid)
        start = time.perf_counter()
        status = 500
        try:
            status = await _answer(scope, send, gateway, route, token, param, body, rid)
        finally:
            request_id_var.reset(reset)
            HTTP_REQUESTS.labels(
                self.service, route.method, route.template, f"{status // 100}xx"
            ).inc()
            HTTP_LATENCY.labels(self.service, route.method, route.template).observe(
                time.perf_counter() - start
            )


def _match(scope: Scope) -> tuple[_Route | None, str | None]:
    if scope["type"] != "http":
        return None, None
    for route in ROUTES:
        if scope["method"] == route.method:
            param = route.param(scope["path"])
            if param is not None:
                return route, param
    return None, None


async def _read_body(receive: Receive, length: int) -> tuple[bytes | None, Receive]:
    """The body (None if it is not what was declared) and a receive that replays it."""
    chunks: list[bytes] = []
    size = 0
    more = True
    messages: list[Message] = []
    while more:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        chunks.append(chunk)
        more = message.get("more_body", False)
        if size > length:
            break
    raw = b"".join(chunks) if not more and size == length else None
    replay = iter(messages)

    async def replayed() -> Message:
        for message in replay:
            return message
        return await receive()

    return raw, replayed


def _model(model: type[BaseModel], raw: bytes | None) -> BaseModel | None:
    """The body as the route's model, or None where the framework must answer it."""
    if raw is None:
        return None
    try:
        return model.model_validate(json.loads(raw))
    except Exception:  # any refusal is the framework's to word
        return None


async def _answer(
    scope: Scope,
    send: Send,
    gateway: Any,
    route: _Route,
    token: str,
    param: str,
    body: Any,
    rid: str,
) -> int:
    try:
        principal = await gateway.api_keys.verify(token)
        await gateway.rate_limiter.check(principal)  # none of the routes holds an inference slot
        if not principal.allows(route.role):
            raise Forbidden(f"this key's role is {principal.role!r}; {route.role!r} is needed")
        result = await route.run(gateway, principal, param, body)
    except HivemindError as exc:
        return await _error(scope, send, exc, rid)
    except redis_errors.RedisError as exc:
        log.warning("redis error on %s: %s", scope["path"], type(exc).__name__)
        return await _error(scope, send, from_redis_error(exc), rid)
    except Exception:  # a bug: the app's own 500 (problem+json, request id), not a bare one
        log.exception("unhandled error on %s", scope["path"])
        return await _error(scope, send, HivemindError("Internal error; see the service log"), rid)
    payload = result.model_dump_json().encode()
    headers = [
        *_JSON,
        (b"content-length", str(len(payload)).encode()),
        (b"x-request-id", rid.encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
    return 200


async def _error(scope: Scope, send: Send, exc: HivemindError, rid: str) -> int:
    response = hivemind_error_response(Request(scope), exc, headers={"x-request-id": rid})
    await response(scope, _nothing, send)
    return exc.status


async def _nothing() -> Message:
    return {"type": "http.disconnect"}
