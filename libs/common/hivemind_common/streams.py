"""Streaming responses shared by the services that relay or make SSE streams."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.responses import StreamingResponse


class ClosingStream(StreamingResponse):
    """A stream that runs ``on_close`` however it ends, even if its body never started (so an
    upstream response is always closed, and a generation sees its client go)."""

    def __init__(self, *args: Any, on_close: Callable[[], Awaitable[None]], **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._on_close = on_close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._on_close()
