"""Errors answer problem+json on native routes and OpenAI's (or Anthropic's) envelope on the routes
whose router declares that API (hivemind_common.wire)."""

from __future__ import annotations

import httpx
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel, ConfigDict

from hivemind_common.errors import NotFound, TooManyRequests
from hivemind_common.service_app import base_app, mark_started
from hivemind_common.wire import AnthropicRoute, OpenAIRoute, RouteWires
from support.servers import serve_app


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str


def _app() -> FastAPI:
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        mark_started(app)
        yield

    app = base_app(service="errtest", lifespan=lifespan)

    @app.post("/v1/facts/{key}")
    async def native(key: str, body: Body) -> dict[str, str]:
        raise NotFound(f"no fact {key!r}")

    openai = APIRouter(route_class=OpenAIRoute)

    @openai.post("/v1/chat/completions")
    async def chat(body: Body) -> dict[str, str]:
        raise TooManyRequests("queue full", retry_after=2)

    anthropic = APIRouter(route_class=AnthropicRoute)

    @anthropic.post("/v1/messages")
    async def messages(body: Body) -> dict[str, str]:
        raise NotFound("no such model")

    app.include_router(openai)
    app.include_router(anthropic)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret detail that must not leak")

    return app


def test_native_errors_are_problem_json() -> None:
    with serve_app(_app()) as base:
        r = httpx.post(base + "/v1/facts/x", json={"name": "n"})
        assert r.status_code == 404
        assert r.headers["content-type"] == "application/problem+json"
        body = r.json()
        assert body["status"] == 404 and body["code"] == "not_found" and "x" in body["detail"]
        bad = httpx.post(base + "/v1/facts/x", json={"name": 1, "extra": True})
        assert bad.status_code == 422
        assert bad.json()["errors"]


def test_openai_routes_use_the_openai_envelope_and_400_for_validation() -> None:
    with serve_app(_app()) as base:
        bad = httpx.post(base + "/v1/chat/completions", content=b"{not json")
        assert bad.status_code == 400
        err = bad.json()["error"]
        assert set(err) == {"message", "type", "param", "code"}
        assert err["type"] == "invalid_request_error"
        limited = httpx.post(base + "/v1/chat/completions", json={"name": "n"})
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "2"
        assert limited.json()["error"]["type"] == "rate_limit_error"


def test_an_unexpected_error_is_a_500_without_details() -> None:
    with serve_app(_app()) as base:
        r = httpx.get(base + "/boom")
        assert r.status_code == 500
        assert "secret detail" not in r.text


def test_anthropic_routes_use_anthropics_envelope_and_400_for_validation() -> None:
    with serve_app(_app()) as base:
        bad = httpx.post(base + "/v1/messages", json={"name": 1})
        assert bad.status_code == 400
        assert bad.json()["type"] == "error"
        assert bad.json()["error"]["type"] == "invalid_request_error"
        missing = httpx.post(base + "/v1/messages", json={"name": "n"})
        assert missing.status_code == 404
        assert missing.json()["error"] == {"type": "not_found_error", "message": "no such model"}


def test_a_route_speaks_what_its_router_declares_matched_like_the_router_matches() -> None:
    app = FastAPI()
    native = APIRouter(prefix="/v1/models")
    openai = APIRouter(route_class=OpenAIRoute)

    @native.get("/versions")
    async def versions() -> None: ...

    @native.post("/{name}/promote")
    async def promote(name: str) -> None: ...

    @openai.get("/v1/models/{model_id}")
    async def model(model_id: str) -> None: ...

    @openai.post("/v1/chat/completions")
    async def chat() -> None: ...

    app.include_router(native)  # first: /v1/models/versions is the native listing
    app.include_router(openai)
    wires = RouteWires(app)
    assert wires("/v1/chat/completions", "POST") == "openai"
    assert wires("/v1/chat/completions", "GET") == "openai"  # a 405 still in OpenAI's shape
    assert wires("/v1/models/smollm2", "GET") == "openai"
    assert wires("/v1/models/versions", "GET") == "native"
    assert wires("/v1/models/default/promote", "POST") == "native"
    assert wires("/v1/facts/x", "GET") == "native"  # no route: native
    assert wires("/embed") == "native"
