"""The base's general scores are measured once per base and read back in later cycles, under a
key of everything they depend on; a user's own base directory is never written to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cycle_worker import feed, settings

from hivemind_trainer.cycle import (
    _general_key,
    _general_scores,
    _known_general_scores,
    run_cycle,
)
from hivemind_trainer.eval import base_scores
from hivemind_trainer.gate import general_eval_items
from hivemind_trainer.recipe.config import RecipeConfig
from hivemind_trainer.recipe.lora_recipe import LoraRecipe

KEY_ARGS = {
    "base": "b179c9523d0e6a0f",
    "end_token": None,
    "seq_len": 512,
    "batch_size": 2,
    "dtype": "float32",
    "device": "cpu",
    "method": "lora",
    "qlora": False,
}


def test_the_key_changes_with_everything_the_scores_depend_on() -> None:
    items = general_eval_items()[:6]
    key = base_scores.cache_key(items, **KEY_ARGS)
    assert key == base_scores.cache_key(items, **KEY_ARGS)
    changed = {
        "base": "0123456789abcdef", "end_token": "<|im_end|>", "seq_len": 256, "batch_size": 4,
        "dtype": "bfloat16", "device": "cuda", "method": "full", "qlora": True,
    }  # fmt: skip
    for name, value in changed.items():
        assert base_scores.cache_key(items, **{**KEY_ARGS, name: value}) != key, name
    assert base_scores.cache_key(items[:5], **KEY_ARGS) != key
    other = [items[0]._replace(answer="x"), *items[1:]]
    assert base_scores.cache_key(other, **KEY_ARGS) != key


def test_a_missing_or_broken_cache_reads_as_nothing_and_a_good_one_round_trips(
    tmp_path: Path,
) -> None:
    scores = {"answers": (1.25, 0.5), "replies": (2.0, float("nan")), "kind:code": (0.1, 1.0)}
    assert base_scores.load(tmp_path, "k") is None
    assert base_scores.load(None, "k") is None
    base_scores.store(tmp_path / "cache", "k", scores)
    back = base_scores.load(tmp_path / "cache", "k")
    assert back is not None and back.keys() == scores.keys()
    assert back["answers"] == (1.25, 0.5) and back["kind:code"] == (0.1, 1.0)
    broken_files = (
        "{not json",
        json.dumps({"answers": [1.0]}),
        json.dumps([1, 2]),
        json.dumps({"replies": [1.0, 0.5]}),  # incomplete: what the gate reads is missing
    )
    for broken in broken_files:
        (tmp_path / "cache" / "k.json").write_text(broken)
        assert base_scores.load(tmp_path / "cache", "k") is None
    base_scores.store(None, "k", scores)  # no directory: nothing kept, no error
    (tmp_path / "file").write_text("")
    base_scores.store(tmp_path / "file", "k", scores)  # not a directory: logged, no error
    assert not list((tmp_path / "cache").glob(".cache-*"))


@pytest.mark.slow
def test_the_base_is_measured_once_and_the_cached_figures_are_the_measured_ones(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    recipe = LoraRecipe(RecipeConfig(seq_len=256, batch_size=2), tiny_llama_dir)
    recipe.setup()
    general = general_eval_items()[:10]
    cache = tmp_path / "eval-cache"

    def base_scores_of(items: list, base: str | None = "b179c9523d0e6a0f") -> tuple:
        key = None if base is None else _general_key(recipe, items, base)
        return _known_general_scores(recipe, items, cache, base=True, key=key)

    first, cached = base_scores_of(general)
    assert not cached and len(list(cache.glob("*.json"))) == 1
    again, cached = base_scores_of(general)
    assert cached
    measured = _general_scores(recipe, general, base=True)
    assert set(again) == set(first) == set(measured)
    for name in measured:
        assert again[name] == pytest.approx(measured[name], nan_ok=True)
    # another set, or another base, is another key: measured, not read
    _, cached = base_scores_of(general[:4])
    assert not cached and len(list(cache.glob("*.json"))) == 2
    _, cached = base_scores_of(general, base="0123456789abcdef")
    assert not cached and len(list(cache.glob("*.json"))) == 3
    # no identity (a user's own base): always measured, nothing kept
    _, cached = base_scores_of(general, base=None)
    assert not cached and len(list(cache.glob("*.json"))) == 3


def _files(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


@pytest.mark.slow
async def test_a_cycle_on_a_users_own_base_directory_writes_nothing_into_it(
    redis_client, redis_url: str, data_dir: Path, trained_tiny_dir: Path
) -> None:
    before = _files(trained_tiny_dir)
    await feed(redis_client, 30, offset=1200)
    result = await run_cycle(redis_client, settings(redis_url, data_dir, trained_tiny_dir))
    # what is asserted is where the cycle wrote, not its verdict: a 4-step run on a tiny model
    # can land either side of the gate
    assert result.status in ("exported", "rejected") and result.gate, result
    assert result.train["base_general_scores"] == "measured"
    assert _files(trained_tiny_dir) == before


@pytest.mark.slow
async def test_the_served_adapters_general_figures_come_from_its_own_cycle(
    redis_client, redis_url: str, data_dir: Path, tmp_path: Path
) -> None:
    from inference.tiny_fim import write_fim_gguf

    from hivemind_common.model_registry import ModelRegistry
    from hivemind_common.models_paths import default_llm_gguf
    from hivemind_trainer.cycle import recipe_config

    gguf = write_fim_gguf(tmp_path / "base.gguf", tokenizer_from=default_llm_gguf(), seed=3)
    cfg = settings(redis_url, data_dir, None, base_gguf=gguf)  # type: ignore[arg-type]
    await feed(redis_client, 30, offset=1400)
    first = await run_cycle(redis_client, cfg)
    assert first.status == "exported" and first.version, first
    assert first.train["served_general_scores"] is None  # nothing served: the base's figures
    registry = ModelRegistry(redis_client, data_dir)
    version_dir = registry.version_dir("default", first.version)
    kept = version_dir / "eval-cache"
    assert len(list(kept.glob("*.json"))) == 1
    await registry.mark_serving("default", first.version)

    await feed(redis_client, 30, offset=1500)
    second = await run_cycle(redis_client, cfg)
    assert second.status in ("exported", "rejected") and second.gate, second
    assert second.train["base_general_scores"] == "cached"
    assert second.train["served_general_scores"] == "cached"
    assert len(list(kept.glob("*.json"))) == 1  # read, never written in a served version
    # the kept figures are what measuring the served adapter gives
    base_dir = Path(registry.read_manifest("default", first.version)["base_hf_dir"])
    recipe = LoraRecipe(recipe_config(cfg, None), base_dir, adapter_dir=version_dir / "adapter")
    recipe.setup()
    try:
        measured = _general_scores(recipe, general_eval_items())
    finally:
        recipe.cleanup()
    assert measured["answers"][0] == pytest.approx(second.gate["served"]["general"])
    assert measured["answers"][1] == pytest.approx(second.gate["served"]["general_accuracy"])
    assert measured["replies"][0] == pytest.approx(second.gate["served"]["general_turns"])
