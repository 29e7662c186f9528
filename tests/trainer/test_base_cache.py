"""The base cache is keyed by what the base is; an adapter never continues on another tokenizer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from inference.tiny_fim import write_fim_gguf
from test_cycle_worker import feed, settings

from hivemind_common.model_registry import ModelRegistry
from hivemind_common.models_paths import default_llm_gguf
from hivemind_trainer.cycle import run_cycle
from hivemind_trainer.recipe.model_io import ensure_base_hf

pytestmark = pytest.mark.slow


def _weights(hf_dir: Path) -> bytes:
    return (hf_dir / "model.safetensors").read_bytes()


def test_a_changed_base_gguf_gets_its_own_cache_never_the_stale_one(tmp_path: Path) -> None:
    model_dir = tmp_path / "models" / "default"
    gguf = tmp_path / "base.gguf"
    write_fim_gguf(gguf, tokenizer_from=default_llm_gguf(), seed=1)
    first = ensure_base_hf(gguf=gguf, hf_dir=None, cache_root=model_dir)
    again = ensure_base_hf(gguf=gguf, hf_dir=None, cache_root=model_dir)
    assert again == first
    write_fim_gguf(gguf, tokenizer_from=default_llm_gguf(), seed=2)  # replaced in place
    second = ensure_base_hf(gguf=gguf, hf_dir=None, cache_root=model_dir)
    assert second != first
    assert _weights(second) != _weights(first)
    other = tmp_path / "other.gguf"
    shutil.copyfile(gguf, other)  # the same base under another name: the same cache
    assert ensure_base_hf(gguf=other, hf_dir=None, cache_root=model_dir) == second
    assert (second / "tokenizer_config.json").is_file()
    assert not list(model_dir.glob("base-hf/.*tmp"))  # no half-written copy left


async def test_an_adapter_is_not_continued_on_a_base_with_another_chat_template(
    redis_client, redis_url: str, data_dir: Path, trained_tiny_dir: Path, tmp_path: Path
) -> None:
    await feed(redis_client, 30, offset=900)
    first = await run_cycle(redis_client, settings(redis_url, data_dir, trained_tiny_dir))
    assert first.status == "exported" and first.version, first
    registry = ModelRegistry(redis_client, data_dir)
    await registry.mark_serving("default", first.version)

    changed = tmp_path / "changed-base"
    shutil.copytree(trained_tiny_dir, changed)
    config = json.loads((changed / "tokenizer_config.json").read_text())
    config["chat_template"] = "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}"
    (changed / "tokenizer_config.json").write_text(json.dumps(config))
    (changed / "chat_template.jinja").unlink(missing_ok=True)

    await feed(redis_client, 30, offset=1000)
    second = await run_cycle(redis_client, settings(redis_url, data_dir, changed))
    assert second.status == "failed"
    assert "template" in (second.error or "") and first.version in (second.error or "")
    assert [mv.version for mv in await registry.list("default")] == [first.version]
