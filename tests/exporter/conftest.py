"""Fixtures of the exporter tests: tiny models (see exporter_tiny) and the shipped GGUF."""

from __future__ import annotations

from pathlib import Path

import pytest
from exporter.exporter_tiny import TinyModel, build_tiny

from hivemind_common.models_paths import default_llm_gguf


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    return default_llm_gguf()


@pytest.fixture(scope="session", params=["llama", "qwen2"])
def tiny(request, tmp_path_factory, smollm2_gguf) -> TinyModel:
    """A tiny model, saved as a HF folder and as an f16 base GGUF."""
    from hivemind_exporter.gguf_layout import ArchParams
    from hivemind_exporter.gguf_write import write_model_gguf

    arch = request.param
    root = tmp_path_factory.mktemp(f"tiny-{arch}")
    model = build_tiny(arch)
    hf_dir = root / "hf"
    model.save_pretrained(str(hf_dir))
    base = write_model_gguf(
        model.state_dict(),
        ArchParams.from_config(model.config),
        root / "base-f16.gguf",
        tokenizer_gguf=smollm2_gguf,
    )
    return TinyModel(arch=arch, model=model, hf_dir=hf_dir, base_gguf=base)
