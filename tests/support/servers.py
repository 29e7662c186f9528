"""Run an ASGI app with a real uvicorn server in a thread, on a free loopback port."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn

from support.waiting import free_port, wait_until


@contextmanager
def serve_app(app: Any, *, port: int | None = None, ready_path: str = "/healthz") -> Iterator[str]:
    """Serve ``app`` until the block ends; yields its base URL once it answers."""
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if not thread.is_alive():
            raise RuntimeError("server thread died during start-up")
        return httpx.get(base + ready_path, timeout=1.0).status_code < 500

    try:
        wait_until(up, timeout=60, what=f"app on {port}")
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=15)
