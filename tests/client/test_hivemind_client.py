"""hivemind_client against a real gateway (sync and async), its errors and its retry policy."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from hivemind_client import (
    AsyncClient,
    BadRequest,
    Client,
    DocInput,
    Forbidden,
    NotFound,
    TransportError,
    Unauthorized,
    Unavailable,
)

from support.gateway import RunningGateway
from support.servers import serve_app
from support.waiting import free_port


def test_the_sync_client_covers_the_native_api(gateway: RunningGateway) -> None:
    with Client(gateway.url, gateway.key()) as c:
        fact = c.put_fact("hosts/aurora", "the GPU node", tags=["infra"])
        assert fact.key == "hosts/aurora" and c.get_fact("hosts/aurora").value == "the GPU node"
        assert [f.key for f in c.list_facts(prefix="hosts/").data] == ["hosts/aurora"]
        assert c.search_facts("GPU node").data[0].key == "hosts/aurora"
        session = c.create_session(task="refactor", context="moving the queue to streams")
        (listed,) = c.list_sessions(preview_chars=6).data
        assert listed.context == "moving" and listed.context_chars == 27
        memory = c.add_memory("we chose Redis streams", session_id=session.id, tags=["design"])
        assert c.get_memory(memory.id).session_id == session.id
        assert c.get_session(session.id).memories == 1
        assert c.search_memories("Redis streams").data[0].id == memory.id
        assert c.list_memories(session_id=session.id).count == 1
        written = c.put_docs(
            [DocInput(source="docs/a.md", text="# A\n\n## Rollback\n\nPin the old version.\n"),
             DocInput(source="src/b.py", text="def helper():\n    return 42\n")],
            collection="lib",
        )  # fmt: skip
        assert [d.status for d in written.data] == ["created", "created"]
        assert c.put_doc("docs/a.md", "# A\n\n## Rollback\n\nPin the old version.\n",
                         collection="lib").data[0].status == "unchanged"  # fmt: skip
        hits = c.search_docs("rollback pin old version", collection="lib")
        assert hits.data[0].cite == "docs/a.md:1-5" and hits.data[0].heading == "A > Rollback"
        page = c.list_docs(collection="lib")
        assert page.count == 2
        detail = c.get_doc(page.data[0].id)
        assert detail.parts and detail.parts[0].lines[0] >= 1
        c.delete_doc(page.data[0].id)
        assert c.list_docs(collection="lib").count == 1
        assert c.tokenize("Hello world", ids=True).ids is not None
        chunks = c.chunk("word " * 400, chunk_tokens=64, overlap_tokens=8)
        assert all(ch.tokens <= 64 for ch in chunks.data)
        c.delete_memory(memory.id)
        c.delete_fact("hosts/aurora")
        with pytest.raises(NotFound):
            c.get_fact("hosts/aurora")


def test_the_async_client_does_the_same(gateway: RunningGateway) -> None:
    key = gateway.key()

    async def run() -> None:
        async with AsyncClient(gateway.url, key) as c:
            await c.put_fact("editor", "vim")
            assert (await c.get_fact("editor")).value == "vim"
            out = await c.put_doc("guide.md", "# Guide\n\nUse the force.\n")
            assert out.data[0].chunks == 1
            hits = await c.search_docs("use the force")
            assert hits.data[0].source == "guide.md"
            with pytest.raises(NotFound):
                await c.get_doc("d" + "0" * 31)

    asyncio.run(run())


def test_problems_become_typed_errors(gateway: RunningGateway) -> None:
    with Client(gateway.url, "hm_wrong_key") as c, pytest.raises(Unauthorized):
        c.list_facts()
    with Client(gateway.url, gateway.key(role="read")) as c:
        with pytest.raises(Forbidden) as refused:
            c.put_fact("k", "v")
        assert refused.value.status == 403
        with pytest.raises(BadRequest) as bad:
            c.chunk("text", chunk_tokens=32, overlap_tokens=32)
        assert "overlap_tokens" in bad.value.message and bad.value.status == 400


@pytest.fixture
def flaky() -> Iterator[tuple[str, dict[str, int]]]:
    """A server that fails the first two calls of every path with 503."""
    seen: dict[str, int] = {}
    app = FastAPI()

    @app.get("/healthz")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    @app.api_route("/v1/{rest:path}", methods=["GET", "POST", "PUT"])
    async def any_call(rest: str, request: Request) -> JSONResponse:
        key = f"{request.method} /v1/{rest}"
        seen[key] = seen.get(key, 0) + 1
        if seen[key] <= 2:
            problem = {"title": "Unavailable", "status": 503, "detail": "busy", "code": "busy"}
            return JSONResponse(problem, status_code=503, media_type="application/problem+json")
        return JSONResponse({"key": "k", "value": "v", "data": [], "count": 0, "method": "x"})

    with serve_app(app) as url:
        yield url, seen


def test_only_safe_calls_are_retried(flaky: tuple[str, dict[str, int]]) -> None:
    url, seen = flaky
    with Client(url, "k", backoff_s=0.01) as c:
        assert c.get_fact("k").value == "v"  # GET: retried until it answers
        assert seen["GET /v1/facts/k"] == 3
        assert c.put_fact("k", "v").key == "k"  # PUT: idempotent, retried
        with pytest.raises(Unavailable):
            c.search_facts("q")  # POST: never sent twice
        assert seen["POST /v1/facts/search"] == 1
    with Client(url, "k", backoff_s=0.01, retries=1) as c, pytest.raises(Unavailable):
        c.list_docs()  # gives up after its retries
    assert seen["GET /v1/docs"] == 2


def test_an_unreachable_gateway_is_a_transport_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with Client(url, "k", retries=1, backoff_s=0.01) as c, pytest.raises(TransportError):
        c.get_fact("x")


def test_a_body_that_is_not_json_is_a_bad_request_before_anything_is_sent() -> None:
    # httpx's own encoder raised a bare UnicodeEncodeError / ValueError, which ended
    # `hivemind ingest` with a traceback on a file name that is not UTF-8
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens: an attempt would be a TransportError
    with Client(url, "k", retries=0) as c:
        with pytest.raises(BadRequest, match="cannot be sent as JSON"):
            c.put_doc("bad\udcff.md", "text")
        with pytest.raises(BadRequest, match="cannot be sent as JSON"):
            c.put_doc("a.md", "text", metadata={"x": float("nan")})


def test_the_async_client_refuses_such_a_body_too() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    async def go() -> None:
        async with AsyncClient(url, "k", retries=0) as c:
            with pytest.raises(BadRequest):
                await c.put_doc("bad\udcff.md", "text")

    asyncio.run(go())
