"""The export recipe's gate: the adapter is judged on an f16 base by raw top-1 agreement."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from exporter.exporter_tiny import TinyModel, make_adapter, write_version

from hivemind_common.model_registry import ModelRegistry, sha256_file
from hivemind_exporter import gguf_write
from hivemind_exporter import recipe as export_recipe
from hivemind_exporter.gguf_layout import ArchParams
from hivemind_exporter.quantize import quantize_gguf
from hivemind_exporter.recipe import ExportConfig, ExportValidationFailed, run_export
from hivemind_exporter.validate import MIN_AGREEMENT, top1_agreement


def _unpermuted_adapter(*args: Any, **kw: Any) -> Path:
    """``write_adapter_gguf`` without llama's rotary permutation of Q/K ``lora_b``."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gguf_write, "needs_permute", lambda params, name: None)
        return gguf_write.write_adapter_gguf(*args, **kw)


def _config(version: str, **kw: Any) -> ExportConfig:
    return ExportConfig(name="default", version=version, require_chat_stop=False, **kw)


@pytest.mark.parametrize("tiny", ["llama"], indirect=True)
def test_an_adapter_without_the_rotary_permutation_fails_raw_agreement(
    tiny: TinyModel, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    peft_model = make_adapter(tiny, tmp_path / "adapter", rank=4)
    lora_state = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    params = ArchParams.from_config(tiny.model.config)
    merged = peft_model.merge_and_unload().eval()
    good = gguf_write.write_adapter_gguf(lora_state, params, tmp_path / "good.gguf", alpha=16)
    broken = _unpermuted_adapter(lora_state, params, tmp_path / "broken.gguf", alpha=16)
    assert top1_agreement(merged, tiny.base_gguf, lora=good).agreement >= MIN_AGREEMENT
    assert top1_agreement(merged, tiny.base_gguf, lora=broken).agreement < MIN_AGREEMENT


@pytest.mark.parametrize("tiny", ["llama"], indirect=True)
def test_the_export_gate_rejects_an_adapter_without_the_rotary_permutation(
    tiny: TinyModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = ModelRegistry(None, tmp_path)  # type: ignore[arg-type]  # files only
    write_version(registry, tiny, "v1")
    monkeypatch.setattr(export_recipe, "write_adapter_gguf", _unpermuted_adapter)
    with pytest.raises(ExportValidationFailed, match="adapter top-1 agreement") as caught:
        run_export(_config("v1"), registry)
    validation = registry.read_manifest("default", "v1")["export"]["validation"]
    assert validation["passed"] is False
    assert validation["adapter"]["top1_agreement"] < MIN_AGREEMENT
    assert validation["f16"]["top1_agreement"] >= MIN_AGREEMENT  # the merge was right
    assert "f16 top-1" not in str(caught.value)


def test_over_a_quantized_base_the_adapter_is_gated_on_a_cached_f16_copy(
    tiny: TinyModel, tmp_path: Path
) -> None:
    quantized = quantize_gguf(tiny.base_gguf, tmp_path / "base-Q8_0.gguf", "Q8_0")
    registry = ModelRegistry(None, tmp_path / "data")  # type: ignore[arg-type]
    for version in ("v1", "v2"):
        write_version(registry, tiny, version)
        registry.update_manifest(
            "default", version, base={"gguf": str(quantized), "hf_dir": str(tiny.hf_dir)}
        )
    cached = registry.model_dir("default") / "base-f16" / f"{sha256_file(quantized)}.gguf"

    first = run_export(_config("v1"), registry)
    assert cached.is_file()
    stamp = cached.stat().st_mtime_ns
    v = first.validation
    assert v["passed"] and v["adapter"]["base"] == cached.name
    assert v["adapter"]["top1_agreement"] >= MIN_AGREEMENT
    # the base it is served with is measured too, and only reported
    assert v["adapter_on_served_base"]["base"] == quantized.name
    assert 0.0 < v["adapter_on_served_base"]["top1_agreement"] <= 1.0
    assert first.serve["gguf"] == str(quantized)  # auto: base + adapter over a quantized base
    # only what serving needs is written: no merged f16 or quantized copy by default
    written = {p.name for p in registry.version_dir("default", "v1").iterdir() if p.is_file()}
    assert "adapter.gguf" in written and not {n for n in written if n.startswith("model-")}
    assert "f16" not in v

    # the merged files on request; the base's f16 copy is made once per base
    second = run_export(_config("v2", write_merged=True), registry)
    assert second.validation["passed"] and cached.stat().st_mtime_ns == stamp
    assert second.validation["f16"]["top1_agreement"] >= MIN_AGREEMENT
    assert (registry.version_dir("default", "v2") / "model-f16.gguf").is_file()
    assert (registry.version_dir("default", "v2") / f"model-{second.quant}.gguf").is_file()
    assert list(cached.parent.iterdir()) == [cached]


def test_over_an_unquantized_base_the_adapter_is_gated_on_the_base_itself(
    tiny: TinyModel, tmp_path: Path
) -> None:
    registry = ModelRegistry(None, tmp_path)  # type: ignore[arg-type]
    write_version(registry, tiny, "v1")
    result = run_export(_config("v1", quant="Q8_0"), registry)
    assert result.validation["adapter"]["base"] == tiny.base_gguf.name
    assert "adapter_on_served_base" not in result.validation
    assert not (registry.model_dir("default") / "base-f16").exists()


@pytest.mark.parametrize("tiny", ["llama"], indirect=True)
def test_a_killed_exports_temp_files_are_swept_and_a_full_disk_is_refused_before_writing(
    tiny: TinyModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil as real_shutil

    registry = ModelRegistry(None, tmp_path)  # type: ignore[arg-type]
    folder = write_version(registry, tiny, "v1")
    stale = folder / ".model-f16.gguf.tmp"  # an exporter was killed mid-write
    stale.write_bytes(b"half a gguf")

    def nearly_full(path: Any) -> Any:
        return real_shutil._ntuple_diskusage(10 << 30, (10 << 30) - (1 << 20), 1 << 20)  # type: ignore[attr-defined]

    monkeypatch.setattr(export_recipe.shutil, "disk_usage", nearly_full)
    with pytest.raises(export_recipe.InsufficientStorage) as caught:
        run_export(_config("v1", write_merged=True), registry)
    assert "GiB" in caught.value.message and "free" in caught.value.message
    assert not stale.exists()
    assert not (folder / "adapter.gguf").exists()  # refused before writing anything
