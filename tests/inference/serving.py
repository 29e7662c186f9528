"""A real inference service on the shipped SmolLM2, shared by the tests of a session.

Loading SmolLM2 takes a fraction of a second, but each copy holds ~100 MB and two threads, so
one server per (token, redis) pair is started on first use and kept for the session. Tests that
swap models use their own server (:func:`running_inference`).
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from support.servers import serve_app

_lock = threading.Lock()
_shared: dict[tuple[str, str], str] = {}
_stack = ExitStack()


@contextmanager
def running_inference(internal_token: str, redis_url: str, **overrides: Any) -> Iterator[str]:
    """Serve an inference app (overrides are InferenceSettings fields); yields its URL."""
    from hivemind_inference.app import create_app
    from hivemind_inference.settings import InferenceSettings

    # one thread: llama.cpp threads spin on barriers and crawl when the host is oversubscribed
    fields: dict[str, Any] = {"n_ctx": 1024, "threads": 1, "max_queue": 32}
    fields.update(overrides)
    settings = InferenceSettings(internal_token=internal_token, redis_url=redis_url, **fields)
    with serve_app(create_app(settings), ready_path="/readyz") as url:
        yield url


def shared_inference_url(internal_token: str, redis_url: str) -> str:
    """One inference service per session (per token and Redis), started on first use."""
    with _lock:
        key = (internal_token, redis_url)
        if key not in _shared:
            _shared[key] = _stack.enter_context(running_inference(internal_token, redis_url))
        return _shared[key]


def shared_fim_inference_url(internal_token: str) -> str:
    """One inference service per session serving ``default`` (SmolLM2, no FIM tokens) and
    ``coder`` (a tiny random model whose vocabulary has FIM tokens); Redis is not used."""
    from inference.tiny_fim import write_fim_gguf

    from hivemind_common.models_paths import default_llm_gguf

    with _lock:
        key = (internal_token, "fim")
        if key not in _shared:
            folder = Path(_stack.enter_context(tempfile.TemporaryDirectory(prefix="hm-fim-")))
            coder = write_fim_gguf(folder / "tiny-fim.gguf", tokenizer_from=default_llm_gguf())
            models = [
                {"name": "default", "gguf": str(default_llm_gguf()), "n_ctx": 512},
                {"name": "coder", "gguf": str(coder), "n_ctx": 512, "version": "fim1"},
            ]
            _shared[key] = _stack.enter_context(
                running_inference(
                    internal_token,
                    "redis://127.0.0.1:9/0",
                    models=models,
                    publish_served_version=False,
                    follow_registry=False,
                )
            )
        return _shared[key]


@contextmanager
def gateway_with_llm(
    redis_url: str, internal_token: str, data_dir: Any, **overrides: Any
) -> Iterator[Any]:
    """A gateway with the shared SmolLM2 inference and MiniLM embedding services behind it."""
    from support.embedding import shared_embedding_url
    from support.gateway import running_gateway

    fields: dict[str, Any] = {
        "inference_url": shared_inference_url(internal_token, redis_url),
        "embedding_url": shared_embedding_url(internal_token),
        "trainer_url": "http://127.0.0.1:9",
    }
    fields.update(overrides)
    with running_gateway(redis_url, internal_token, data_dir, **fields) as gw:
        yield gw
