"""Hardware auto-configuration with CUDA, ROCm and bitsandbytes faked: the selection logic only."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from hivemind_trainer.recipe import config as recipe_config
from hivemind_trainer.recipe import model_io
from hivemind_trainer.recipe.config import detect_hardware, pick_batch_size

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
    hw = detect_hardware(threads=2)
    assert (hw.device, hw.torch_device, hw.dtype, hw.qlora) == ("cuda", "cuda", "bfloat16", True)
    assert hw.autocast_dtype is torch.bfloat16 and hw.free_memory_bytes == 20 * GIB
    assert not hw.notes


def test_cuda_without_bitsandbytes_trains_16_bit_lora_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_gpu(monkeypatch, bnb=False, bf16=False)
    hw = detect_hardware(threads=2)
    assert (hw.device, hw.dtype, hw.qlora) == ("cuda", "float16", False)
    assert any("bitsandbytes" in note for note in hw.notes)


def test_rocm_is_a_cuda_device_without_qlora(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpu(monkeypatch, bnb=True, hip="6.0")
    hw = detect_hardware(threads=2)
    assert (hw.device, hw.torch_device, hw.qlora) == ("rocm", "cuda", False)


def test_no_gpu_means_cpu_with_bf16_only_where_the_cpu_has_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for native, dtype in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(recipe_config, "_cpu_has_bf16", lambda native=native: native)
        hw = detect_hardware(threads=torch.get_num_threads())
        assert (hw.device, hw.torch_device, hw.dtype, hw.qlora) == ("cpu", "cpu", dtype, False)


def test_the_batch_grows_with_gpu_memory_and_stays_small_on_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_gpu(monkeypatch, bnb=True)
    gpu = detect_hardware(threads=2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cpu = detect_hardware(threads=torch.get_num_threads())
    sizes = dict(requested=0, seq_len=512, estimate_one=GIB // 2, weights=GIB // 4)
    assert pick_batch_size(gpu, **sizes) == 16
    assert pick_batch_size(cpu, **sizes) <= 4
    assert pick_batch_size(gpu, **{**sizes, "requested": 3}) == 3


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
