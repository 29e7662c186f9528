"""A real embedding service (the shipped all-MiniLM-L6-v2) on a free port, for tests.

Loading the model takes seconds, so :func:`shared_embedding_url` starts one server per test
session and keeps it; tests that need their own (batching off, a server they stop) use
:func:`running_embedding`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from support.servers import serve_app

_lock = threading.Lock()
_shared: dict[str, str] = {}
_stack = ExitStack()


@contextmanager
def running_embedding(
    internal_token: str, *, port: int | None = None, **overrides: Any
) -> Iterator[str]:
    """Serve an embedding app (overrides are EmbeddingSettings fields); yields its URL."""
    from hivemind_embedding.app import create_app
    from hivemind_embedding.settings import EmbeddingSettings

    # one torch thread in tests: the suite shares the machine's cores with other servers
    overrides.setdefault("embedding_threads", 1)
    # no compiled copy (half a minute of a core after each start) unless a test asks for one:
    # tests/embedding/test_compiled_path.py does
    overrides.setdefault("embedding_compile", False)
    settings = EmbeddingSettings(internal_token=internal_token, **overrides)
    with serve_app(create_app(settings), port=port, ready_path="/readyz") as url:
        yield url


def shared_embedding_url(internal_token: str) -> str:
    """One embedding service for the whole session, started on first use."""
    with _lock:
        if internal_token not in _shared:
            _shared[internal_token] = _stack.enter_context(running_embedding(internal_token))
        return _shared[internal_token]
