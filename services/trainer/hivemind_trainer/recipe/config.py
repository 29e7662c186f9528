"""The recipe's one typed config, its modes, and the hardware auto-configuration.

``RecipeConfig.from_mode("fast", seq_len=256)`` gives the preset; ``with_overrides({"lr": "1e-4"})``
applies ``key=value`` strings (from a TrainJob or the CLI). ``detect_hardware`` picks CUDA, ROCm or
CPU, bf16 where it is supported, and a batch size from free memory with the estimate shown first.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

import torch

from hivemind_common.errors import Invalid

log = logging.getLogger(__name__)

Mode = Literal["fast", "balanced", "best"]
ATTN_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
ALL_TARGETS = (*ATTN_TARGETS, "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class RecipeConfig:
    """Every knob of one training run."""

    mode: Mode = "fast"
    seq_len: int = 512
    batch_size: int = 0  # 0: from free memory
    epochs: float = 1.0
    max_steps: int | None = None
    lr: float = 5e-4
    warmup_steps: int = 5
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    lora_r: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    targets: tuple[str, ...] = ATTN_TARGETS
    seed: int = 1234
    threads: int | None = None
    checkpoint_every: int = 50
    min_trained_share: float = 0.02  # validators: share of tokens that carry a label
    max_trained_share: float = 0.95
    end_token: str | None = None  # default: the tokenizer's eos token
    log_every: int = 5

    @classmethod
    def from_mode(cls, mode: str, **kw: Any) -> RecipeConfig:
        presets: dict[str, dict[str, Any]] = {
            "fast": {"epochs": 1.0, "lora_r": 8, "lora_alpha": 16.0, "targets": ATTN_TARGETS},
            "balanced": {"epochs": 2.0, "lora_r": 16, "lora_alpha": 32.0, "targets": ALL_TARGETS},
            "best": {"epochs": 3.0, "lora_r": 32, "lora_alpha": 64.0, "targets": ALL_TARGETS},
        }
        if mode not in presets:
            raise Invalid(f"mode must be one of {', '.join(presets)}", param="mode")
        return cls(mode=mode, **{**presets[mode], **kw})  # type: ignore[arg-type]

    def with_overrides(self, overrides: dict[str, str]) -> RecipeConfig:
        """Apply ``key=value`` strings, typed by the field they set."""
        known = {f.name: f for f in fields(self)}
        changes: dict[str, Any] = {}
        for key, raw in overrides.items():
            if key not in known:
                raise Invalid(f"unknown recipe setting {key!r}", param=key)
            current = getattr(self, key)
            try:
                if key == "targets":
                    changes[key] = tuple(t.strip() for t in raw.split(",") if t.strip())
                elif key in {"max_steps", "threads"}:
                    changes[key] = None if raw in {"", "none", "None"} else int(raw)
                elif key == "end_token":
                    changes[key] = raw or None
                elif isinstance(current, bool):
                    changes[key] = raw.lower() in {"1", "true", "yes"}
                elif isinstance(current, int):
                    changes[key] = int(raw)
                elif isinstance(current, float):
                    changes[key] = float(raw)
                else:
                    changes[key] = raw
            except ValueError as exc:
                raise Invalid(f"recipe setting {key}={raw!r} is not valid", param=key) from exc
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["targets"] = list(self.targets)
        return out


@dataclass(frozen=True)
class Hardware:
    """Where and how the recipe runs."""

    device: str  # "cuda", "rocm" (torch calls it cuda) or "cpu"
    torch_device: str
    dtype: str  # autocast dtype: "bfloat16", "float16" or "float32"
    qlora: bool
    threads: int
    free_memory_bytes: int
    notes: list[str] = field(default_factory=list)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(self.dtype)


def _free_cpu_memory() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


def _cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    except OSError:
        pass
    return False


def detect_hardware(threads: int | None = None) -> Hardware:
    """CUDA / ROCm when torch sees a GPU (QLoRA when bitsandbytes is there too), else CPU."""
    notes: list[str] = []
    if torch.cuda.is_available():
        device = "rocm" if getattr(torch.version, "hip", None) else "cuda"
        free, _total = torch.cuda.mem_get_info()
        bf16 = torch.cuda.is_bf16_supported()
        qlora = device == "cuda" and importlib.util.find_spec("bitsandbytes") is not None
        if device == "cuda" and not qlora:
            notes.append("bitsandbytes not installed: LoRA in 16-bit, no QLoRA")
        n = threads or max(1, min(8, os.cpu_count() or 1))
        return Hardware(device, "cuda", "bfloat16" if bf16 else "float16", qlora, n, free, notes)
    n = threads or (os.cpu_count() or 1)
    torch.set_num_threads(n)
    # bf16 autocast pays off only where the CPU computes bf16 natively; emulated, it is slower
    dtype = "bfloat16" if _cpu_has_bf16() else "float32"
    if dtype == "float32":
        notes.append("CPU without native bf16 (avx512_bf16 / amx_bf16 / bf16): float32")
    return Hardware("cpu", "cpu", dtype, False, n, _free_cpu_memory(), notes)


def estimate_memory(
    *, params: int, trainable: int, seq_len: int, batch: int, hidden: int, layers: int, vocab: int
) -> int:
    """Rough bytes for one step: weights, LoRA optimizer state, activations, trained logits."""
    weights = params * 4
    optimizer = trainable * 4 * 4  # param, grad, two Adam moments
    activations = batch * seq_len * hidden * layers * 4 * 34  # attention + MLP saved tensors
    logits = batch * seq_len * vocab * 4 * 2  # worst case: every token trained
    return int(weights + optimizer + activations + logits)


def pick_batch_size(
    hw: Hardware, *, requested: int, seq_len: int, estimate_one: int, weights: int
) -> int:
    """The requested batch, or the largest power of two (≤ 16) that fits half the free memory."""
    if requested > 0:
        return requested
    budget = hw.free_memory_bytes // 2 - weights
    per_sample = max(1, estimate_one - weights)
    batch = 1
    while batch < 16 and per_sample * batch * 2 <= budget:
        batch *= 2
    if hw.device == "cpu":
        batch = min(batch, 4)  # CPU throughput stops growing beyond a few packed rows
    return max(1, batch)
