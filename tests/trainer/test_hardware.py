"""Hardware auto-configuration with CUDA, ROCm and bitsandbytes faked: the selection logic only."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from hivemind_common.errors import Invalid, Unprocessable
from hivemind_trainer.recipe import config as recipe_config
from hivemind_trainer.recipe import model_io
from hivemind_trainer.recipe.config import detect_hardware

GIB = 1 << 30


def fake_gpu(
    monkeypatch: pytest.MonkeyPatch, *, bnb: bool, hip: str | None = None, bf16: bool = True
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (20 * GIB, 24 * GIB))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(torch.version, "hip", hip)
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: Any, **kw: Any) -> Any:
        if name == "bitsandbytes":
            return SimpleNamespace(name=name) if bnb else None
        return real_find_spec(name, *args, **kw)

    monkeypatch.setattr(recipe_config.importlib.util, "find_spec", find_spec)


def test_cuda_with_bitsandbytes_picks_qlora_in_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpu(monkeypatch, bnb=True)
    hw = detect_hardware(threads=2, method="qlora")
    assert (hw.device, hw.torch_device, hw.dtype, hw.qlora) == ("cuda", "cuda", "bfloat16", True)
    assert hw.autocast_dtype is torch.bfloat16 and hw.free_memory_bytes == 20 * GIB
    assert hw.checkpointing and not hw.scaler and hw.adamw8bit
    assert not hw.notes


def test_gpu_lora_keeps_the_frozen_base_in_16_bit_and_checkpoints(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_gpu(monkeypatch, bnb=False)
    hw = detect_hardware(threads=2)
    assert (hw.dtype, hw.weight_dtype, hw.qlora) == ("bfloat16", "bfloat16", False)
    assert hw.torch_weight_dtype is torch.bfloat16 and hw.checkpointing
    assert hw.make_scaler() is None  # bf16 needs no loss scaling
    off = detect_hardware(threads=2, checkpointing=False)
    assert not off.checkpointing
    full = detect_hardware(threads=2, method="full")
    assert full.weight_dtype == "float32" and full.dtype == "bfloat16"  # float32 master weights


def test_fp16_gpu_gets_a_grad_scaler(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpu(monkeypatch, bnb=False, bf16=False)
    hw = detect_hardware(threads=2, method="qlora")
    assert (hw.device, hw.dtype, hw.weight_dtype, hw.qlora) == ("cuda", "float16", "float16", False)
    assert hw.scaler and any("bitsandbytes" in note for note in hw.notes)
    scaler = hw.make_scaler()
    assert isinstance(scaler, torch.amp.GradScaler)


def test_rocm_gets_qlora_only_with_a_bitsandbytes_that_supports_it() -> None:
    probe = recipe_config.DeviceProbe(
        gpu=True, hip=True, gpu_bf16=True, gpu_free_bytes=20 * GIB, bitsandbytes="0.43.1"
    )
    old = recipe_config.plan_hardware(probe, method="qlora")
    assert (old.device, old.torch_device, old.qlora) == ("rocm", "cuda", False)
    assert any("ROCm" in note for note in old.notes)
    assert not old.adamw8bit  # paged 8-bit AdamW: CUDA only
    new = recipe_config.plan_hardware(
        dataclasses.replace(probe, bitsandbytes="0.48.0"), method="qlora"
    )
    assert new.qlora and new.dtype == "bfloat16"


def test_no_gpu_means_cpu_with_bf16_only_where_the_cpu_has_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for native, dtype in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(recipe_config, "_cpu_has_bf16", lambda native=native: native)
        hw = detect_hardware(threads=torch.get_num_threads())
        assert (hw.device, hw.torch_device, hw.dtype, hw.qlora) == ("cpu", "cpu", dtype, False)
        assert hw.weight_dtype == "float32" and not hw.scaler and not hw.checkpointing
    cpu = recipe_config.DeviceProbe(gpu=False, cpu_bf16=True)
    assert recipe_config.plan_hardware(cpu, dtype="float32").dtype == "float32"
    assert recipe_config.plan_hardware(cpu, method="full").checkpointing
    with pytest.raises(Invalid):
        recipe_config.plan_hardware(cpu, dtype="float16")


def test_the_recipe_picks_the_batch_from_the_estimate_and_refuses_what_cannot_fit(
    tiny_llama_dir: Path,
) -> None:
    from hivemind_trainer.recipe.config import RecipeConfig
    from hivemind_trainer.recipe.lora_recipe import LoraRecipe

    probe = recipe_config.DeviceProbe(gpu=True, gpu_bf16=True, gpu_free_bytes=20 * GIB)
    gpu = recipe_config.plan_hardware(probe, threads=2)
    recipe = LoraRecipe(RecipeConfig.from_mode("fast", seq_len=512), tiny_llama_dir, hardware=gpu)
    assert recipe._fit_batch(gpu)[0] == 16
    cpu = recipe_config.plan_hardware(recipe_config.DeviceProbe(gpu=False, cpu_free_bytes=20 * GIB))
    assert recipe._fit_batch(cpu)[0] == 4  # CPU throughput stops growing beyond a few rows
    small = dataclasses.replace(cpu, free_memory_bytes=600 << 20)
    full = LoraRecipe(
        RecipeConfig.from_mode("fast", seq_len=512, batch_size=64, method="full"),
        tiny_llama_dir,
        hardware=small,
    )
    with pytest.raises(Unprocessable, match=r"activations .* MiB .* available"):
        full.setup()


def test_qlora_loads_the_base_in_4_bit_nf4_on_the_gpu(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import transformers

    seen: dict[str, Any] = {}

    class Loaded:
        config = SimpleNamespace(use_cache=True)

        def to(self, device: str) -> Loaded:
            seen["moved_to"] = device
            return self

    def from_pretrained(path: str, **kwargs: Any) -> Loaded:
        seen.update(kwargs)
        return Loaded()

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", from_pretrained)
    model_io.load_model(tmp_path, device="cuda", qlora=True)
    q = seen["quantization_config"]
    assert q.load_in_4bit and q.bnb_4bit_quant_type == "nf4"
    assert q.bnb_4bit_compute_dtype is torch.bfloat16
    assert seen["device_map"] == {"": 0} and "moved_to" not in seen  # placed by the loader

    seen.clear()
    model_io.load_model(tmp_path, device="cuda", qlora=False)
    assert "quantization_config" not in seen and seen["moved_to"] == "cuda"
    assert seen["dtype"] is torch.float32
    seen.clear()
    model_io.load_model(tmp_path, device="cuda", weight_dtype=torch.bfloat16)
    assert seen["dtype"] is torch.bfloat16  # a frozen base in 16 bits on the GPU
