"""Fixtures of the inference tests: the shared SmolLM2 service and GGUF copies for swaps."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
from inference.serving import shared_inference_url


@pytest.fixture
def inference_url(redis_url: str, internal_token: str) -> str:
    return shared_inference_url(internal_token, redis_url)


@pytest.fixture
def inference(inference_url: str, internal_token: str) -> httpx.Client:
    headers = {"Authorization": f"Bearer {internal_token}"}
    with httpx.Client(base_url=inference_url, headers=headers, timeout=120) as client:
        yield client


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
