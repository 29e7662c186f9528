"""A stand-in for the inference service where a test needs to see or hold what reaches it.

It answers ``/v1/models``, ``/tokenize`` and ``/v1/chat/completions`` (after ``release`` is set,
so a test can hold chats open), and records every chat body it was sent, with its partition header.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request

from support.servers import serve_app


@dataclass
class StubInference:
    url: str
    release: threading.Event
    chats: list[dict[str, Any]] = field(default_factory=list)
    partitions: list[str | None] = field(default_factory=list)  # each chat's partition header


@contextmanager
def stub_inference(*, held: bool = False) -> Iterator[StubInference]:
    """Serve the stub; with ``held``, chats wait until ``stub.release`` is set."""
    release = threading.Event()
    if not held:
        release.set()
    app = FastAPI()
    stub = StubInference(url="", release=release)

    @app.get("/healthz")
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "default", "object": "model", "n_ctx": 2048}]}

    @app.post("/tokenize")
    async def tokenize(request: Request) -> dict[str, int]:
        body = await request.json()
        return {"count": max(1, len(str(body.get("content", ""))) // 4)}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> dict[str, Any]:
        stub.chats.append(await request.json())
        stub.partitions.append(request.headers.get("x-hivemind-partition"))
        while not release.is_set():
            await asyncio.sleep(0.01)
        message = {"role": "assistant", "content": "ok"}
        return {
            "id": "c1",
            "object": "chat.completion",
            "created": 0,
            "model": "default",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        }

    with serve_app(app) as url:
        stub.url = url
        try:
            yield stub
        finally:
            release.set()
