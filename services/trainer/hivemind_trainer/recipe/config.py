"""The recipe's one typed config, its modes, and the hardware auto-configuration.

``RecipeConfig.from_mode("fast", seq_len=256)`` gives the preset; ``with_overrides({"lr": "1e-4"})``
applies ``key=value`` strings (from a TrainJob or the CLI). ``detect_hardware`` picks CUDA, ROCm or
CPU, bf16 where it is supported, and a batch size from free memory with the estimate shown first.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

import torch

from hivemind_common.errors import Invalid
from hivemind_common.recipe_overrides import DTYPES, METHODS, OPTIMIZERS, check_override

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
    # a small dataset still gets this many optimizer steps (more passes over it, at most
    # max_epochs): 100 short chats pack into ~6 steps of 4 rows, and 6 steps (5 of them warmup)
    # taught SmolLM2 nothing of a style that every one of the 100 showed
    min_steps: int = 0
    max_epochs: float = 8.0
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
    method: str = "lora"  # lora | qlora | full (qlora: lora on a 4-bit base, GPU only)
    optimizer: str = "adamw"  # adamw | adamw8bit (CUDA) | muon
    checkpointing: bool | None = None  # gradient checkpointing; None: on for GPU and full runs
    dtype: str | None = None  # compute dtype override: float32 | bfloat16 | float16

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise Invalid(f"method must be one of {', '.join(METHODS)}", param="method")
        if self.optimizer not in OPTIMIZERS:
            raise Invalid(f"optimizer must be one of {', '.join(OPTIMIZERS)}", param="optimizer")
        if self.dtype is not None and self.dtype not in DTYPES:
            raise Invalid(f"dtype must be one of {', '.join(DTYPES)}", param="dtype")

    @classmethod
    def from_mode(cls, mode: str, **kw: Any) -> RecipeConfig:
        presets: dict[str, dict[str, Any]] = {
            "fast": {
                "epochs": 1.0,
                "min_steps": 32,
                "lora_r": 8,
                "lora_alpha": 16.0,
                "targets": ATTN_TARGETS,
            },
            "balanced": {
                "epochs": 2.0,
                "min_steps": 48,
                "lora_r": 16,
                "lora_alpha": 32.0,
                "targets": ALL_TARGETS,
            },
            "best": {
                "epochs": 3.0,
                "min_steps": 64,
                "lora_r": 32,
                "lora_alpha": 64.0,
                "targets": ALL_TARGETS,
            },
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
            check_override(key, raw)  # the types and bounds the gateway checks as well
            current = getattr(self, key)
            try:
                if key == "targets":
                    changes[key] = tuple(t.strip() for t in raw.split(",") if t.strip())
                elif key in {"max_steps", "threads"}:
                    changes[key] = None if raw in {"", "none", "None"} else int(raw)
                elif key in {"end_token", "dtype"}:
                    changes[key] = raw or None
                elif key == "checkpointing":
                    changes[key] = (
                        None if raw in {"", "auto"} else raw.lower() in {"1", "true", "yes"}
                    )
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
    """Where and how the recipe runs.

    ``dtype`` is the autocast (compute) dtype; ``weight_dtype`` the storage of the frozen base
    (bf16/fp16 on a GPU, so a 7B base takes 14 GB instead of 28; float32 on a CPU, where the
    matmuls autocast); LoRA parameters are float32 everywhere. ``scaler``: fp16 needs a
    GradScaler (bf16 does not). ``checkpointing``: recompute each layer in the backward.
    """

    device: str  # "cuda", "rocm" (torch calls it cuda) or "cpu"
    torch_device: str
    dtype: str  # autocast dtype: "bfloat16", "float16" or "float32"
    qlora: bool
    threads: int
    free_memory_bytes: int
    notes: list[str] = field(default_factory=list)
    weight_dtype: str = "float32"
    scaler: bool = False
    checkpointing: bool = False
    adamw8bit: bool = False  # bitsandbytes' paged 8-bit AdamW can run here

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(self.dtype)

    @property
    def torch_weight_dtype(self) -> torch.dtype:
        return {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(
            self.weight_dtype, torch.float32
        )

    def make_scaler(self) -> torch.amp.GradScaler | None:
        """A GradScaler for fp16 autocast (None otherwise)."""
        if not self.scaler:
            return None
        return torch.amp.GradScaler("cuda")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DeviceProbe:
    """What the machine offers (read from torch by :func:`probe_device`; faked in tests)."""

    gpu: bool
    hip: bool = False
    gpu_bf16: bool = False
    gpu_free_bytes: int = 0
    bitsandbytes: str | None = None  # its version when installed
    cpu_bf16: bool = False
    cpu_free_bytes: int = 4 << 30
    cpus: int = 1


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


def _bitsandbytes_version() -> str | None:
    if importlib.util.find_spec("bitsandbytes") is None:
        return None
    try:
        return importlib.metadata.version("bitsandbytes")
    except importlib.metadata.PackageNotFoundError:
        return "0"


def probe_device() -> DeviceProbe:
    gpu = torch.cuda.is_available()
    free = torch.cuda.mem_get_info()[0] if gpu else 0
    return DeviceProbe(
        gpu=gpu,
        hip=bool(getattr(torch.version, "hip", None)),
        gpu_bf16=bool(gpu and torch.cuda.is_bf16_supported()),
        gpu_free_bytes=int(free),
        bitsandbytes=_bitsandbytes_version(),
        cpu_bf16=_cpu_has_bf16(),
        cpu_free_bytes=_free_cpu_memory(),
        cpus=os.cpu_count() or 1,
    )


def _version_at_least(version: str, minimum: tuple[int, ...]) -> bool:
    parts: list[int] = []
    for piece in version.split(".")[: len(minimum)]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts) >= minimum


# bitsandbytes runs on ROCm from its multi-backend releases (0.45) on
BNB_ROCM_MIN = (0, 45)


def plan_hardware(
    probe: DeviceProbe,
    *,
    threads: int | None = None,
    method: str = "lora",
    dtype: str | None = None,
    checkpointing: bool | None = None,
) -> Hardware:
    """Device, dtypes, QLoRA, scaler and checkpointing for ``method`` on ``probe``'s machine.

    GPU: bf16 where supported, else fp16 with a GradScaler; the frozen base stored in that
    dtype (4-bit NF4 under QLoRA, where bitsandbytes runs: CUDA, and ROCm from 0.45); gradient
    checkpointing on unless asked off. A full run keeps float32 master weights. CPU: bf16
    autocast only where the CPU computes bf16 natively, the base in float32, no checkpointing
    for LoRA (the activations of a small model fit; it costs a third more compute).
    """
    notes: list[str] = []
    if method not in METHODS:
        raise Invalid(f"method must be one of {', '.join(METHODS)}", param="method")
    if probe.gpu:
        device = "rocm" if probe.hip else "cuda"
        bnb = probe.bitsandbytes
        bnb_ok = bnb is not None and (not probe.hip or _version_at_least(bnb, BNB_ROCM_MIN))
        chosen = dtype or ("bfloat16" if probe.gpu_bf16 else "float16")
        qlora = method == "qlora" and bnb_ok
        if method == "qlora" and not bnb_ok:
            notes.append(
                "bitsandbytes missing"
                + (
                    f" or older than {'.'.join(map(str, BNB_ROCM_MIN))} on ROCm"
                    if probe.hip
                    else ""
                )
                + ": LoRA on a 16-bit base instead of QLoRA"
            )
        weight = "float32" if method == "full" or chosen == "float32" else chosen
        n = threads or max(1, min(8, probe.cpus))
        return Hardware(
            device,
            "cuda",
            chosen,
            qlora,
            n,
            probe.gpu_free_bytes,
            notes,
            weight_dtype=weight,
            scaler=chosen == "float16",
            checkpointing=True if checkpointing is None else checkpointing,
            adamw8bit=device == "cuda" and bnb is not None,
        )
    if method == "qlora":
        notes.append("QLoRA needs a GPU: LoRA on a float32 base")
    n = threads or probe.cpus
    chosen = dtype or ("bfloat16" if probe.cpu_bf16 else "float32")
    if chosen == "float16":
        raise Invalid("float16 training needs a GPU; use bfloat16 or float32", param="dtype")
    if dtype is None and chosen == "float32":
        notes.append("CPU without native bf16 (avx512_bf16 / amx_bf16 / bf16): float32")
    return Hardware(
        "cpu",
        "cpu",
        chosen,
        False,
        n,
        probe.cpu_free_bytes,
        notes,
        weight_dtype="float32",
        scaler=False,
        checkpointing=bool(checkpointing) if checkpointing is not None else method == "full",
    )


def detect_hardware(
    threads: int | None = None,
    *,
    method: str = "lora",
    dtype: str | None = None,
    checkpointing: bool | None = None,
) -> Hardware:
    """:func:`plan_hardware` on this machine (sets torch's CPU thread count)."""
    hw = plan_hardware(
        probe_device(), threads=threads, method=method, dtype=dtype, checkpointing=checkpointing
    )
    if hw.device == "cpu":
        torch.set_num_threads(hw.threads)
    return hw
