"""Fixtures of the trainer tests: a tiny tokenizer and tiny llama / qwen2 model directories."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from trainer_tiny import save_tiny, tiny_tokenizer


@pytest.fixture(scope="session")
def tokenizer() -> Any:
    return tiny_tokenizer()


@pytest.fixture(scope="session", params=["llama", "qwen2"])
def tiny_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny(tmp_path_factory.mktemp(f"tiny-{request.param}"), request.param)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("tiny-llama"), "llama")


@pytest.fixture(scope="session")
def smollm2_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """SmolLM2's tokenizer read from the shipped GGUF (about 5 s), once per session."""
    from transformers import AutoTokenizer

    from hivemind_trainer.recipe.model_io import default_gguf

    gguf = default_gguf()
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


@pytest.fixture(scope="session")
def trained_tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trainer_tiny import save_pretrained_tiny

    return save_pretrained_tiny(tmp_path_factory.mktemp("tiny-trained"))
