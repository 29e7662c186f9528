"""Errors answer problem+json on native routes and OpenAI's envelope on OpenAI routes."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict

from hivemind_common.error_handlers import is_openai_path
from hivemind_common.errors import NotFound, TooManyRequests
from hivemind_common.service_app import base_app, mark_started
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

    @app.post("/v1/chat/completions")
    async def chat(body: Body) -> dict[str, str]:
        raise TooManyRequests("queue full", retry_after=2)

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


def test_openai_paths_are_told_apart_from_native_ones() -> None:
    assert is_openai_path("/v1/chat/completions")
    assert is_openai_path("/v1/models")
    assert is_openai_path("/v1/models/smollm2")
    assert not is_openai_path("/v1/models/versions")
    assert not is_openai_path("/v1/models/default/promote")
    assert not is_openai_path("/v1/facts/x")
    assert not is_openai_path("/embed")  # the embedding service's native route
