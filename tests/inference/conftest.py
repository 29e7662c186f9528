"""A real inference service on the shipped SmolLM2, started once per session."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.servers import serve_app

INFERENCE_TOKEN = "test-inference-token-not-secret"


@dataclass
class RunningInference:
    url: str
    token: str
    app: Any

    def client(self, **kw: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120, **kw)


@pytest.fixture(scope="session")
def inference_service(
    redis_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningInference]:
    """The inference service with SmolLM2 as ``default``, small context, 2 threads."""
    from hivemind_inference.app import create_app
    from hivemind_inference.settings import InferenceSettings

    settings = InferenceSettings(
        redis_url=redis_server.url,
        internal_token=INFERENCE_TOKEN,
        data_dir=tmp_path_factory.mktemp("inference-var"),
        n_ctx=1024,
        threads=2,
        max_queue=16,
    )
    app = create_app(settings)
    with serve_app(app) as url:
        yield RunningInference(url=url, token=INFERENCE_TOKEN, app=app)


@pytest.fixture(scope="session")
def gguf_copies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A byte-identical copy of the shipped GGUF (a 'new build') and a truncated, corrupt one."""
    from hivemind_common.models_paths import default_llm_gguf

    src = default_llm_gguf()
    folder = tmp_path_factory.mktemp("ggufs")
    good = folder / "model-good.gguf"
    shutil.copyfile(src, good)
    corrupt = folder / "model-corrupt.gguf"
    with src.open("rb") as fh:
        corrupt.write_bytes(fh.read(src.stat().st_size // 3))
    return {"good": good, "corrupt": corrupt, "shipped": src}
