"""Whether the machine is idle enough to start a learning cycle.

On a node with an NVIDIA GPU (NVML answers) the rule reads the GPU the trainer uses: its
utilisation must be at most ``idle_max_gpu_util_pct`` and its free memory at least
``idle_min_free_gpu_mb``, so a cycle never starts under a busy inference service and never takes
the memory inference holds. Without NVML (CPU-only nodes, or no driver) the same rule reads the
1-minute load average per CPU against ``idle_max_load_per_cpu``. A cycle asked for by an operator
(``POST /v1/learning/train``, ``hivemind learn train-now``) does not wait.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)
MIB = 1024 * 1024


@dataclass(frozen=True)
class IdleVerdict:
    idle: bool
    reason: str
    device: str  # "gpu:<index>" or "cpu"


@dataclass(frozen=True)
class GpuSample:
    util_pct: float
    free_bytes: int
    total_bytes: int


class IdleSettings(Protocol):
    idle_check: bool
    idle_gpu_index: int
    idle_max_gpu_util_pct: float
    idle_min_free_gpu_mb: int
    idle_max_load_per_cpu: float


def nvml_sample(index: int, nvml: Any = None) -> GpuSample | None:
    """Utilisation and memory of GPU ``index`` through NVML; None where NVML is not available."""
    if nvml is None:
        try:
            import pynvml  # nvidia-ml-py
        except ImportError:
            return None
        nvml = pynvml
    try:
        nvml.nvmlInit()
    except Exception:  # no driver or library: a CPU-only node
        return None
    try:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        util = nvml.nvmlDeviceGetUtilizationRates(handle)
        mem = nvml.nvmlDeviceGetMemoryInfo(handle)
        return GpuSample(float(util.gpu), int(mem.free), int(mem.total))
    except Exception as exc:  # a GPU that vanished or an index out of range: say so, use load
        log.warning("NVML could not read GPU %d: %s", index, type(exc).__name__)
        return None
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception as exc:  # shutting down a library that half-started
            log.debug("nvmlShutdown: %s", type(exc).__name__)


def check_idle(
    settings: IdleSettings,
    *,
    gpu: Callable[[int], GpuSample | None] = nvml_sample,
    loadavg: Callable[[], tuple[float, float, float]] = os.getloadavg,
    cpus: int | None = None,
) -> IdleVerdict:
    """The GPU rule where NVML reads the trainer's GPU, else the load-average rule."""
    if not settings.idle_check:
        return IdleVerdict(True, "idle check off", "none")
    sample = gpu(settings.idle_gpu_index)
    if sample is not None:
        device = f"gpu:{settings.idle_gpu_index}"
        free_mb = sample.free_bytes // MIB
        if sample.util_pct > settings.idle_max_gpu_util_pct:
            return IdleVerdict(
                False,
                f"GPU {settings.idle_gpu_index} busy: {sample.util_pct:.0f}% utilisation "
                f"(> {settings.idle_max_gpu_util_pct:.0f}%)",
                device,
            )
        if free_mb < settings.idle_min_free_gpu_mb:
            return IdleVerdict(
                False,
                f"GPU {settings.idle_gpu_index} short of memory: {free_mb} MiB free "
                f"(< {settings.idle_min_free_gpu_mb} MiB)",
                device,
            )
        return IdleVerdict(
            True, f"GPU {settings.idle_gpu_index} idle: {sample.util_pct:.0f}%, {free_mb} MiB free",
            device,
        )  # fmt: skip
    count = cpus or os.cpu_count() or 1
    per_cpu = loadavg()[0] / count
    if per_cpu > settings.idle_max_load_per_cpu:
        return IdleVerdict(
            False,
            f"CPU busy: load {per_cpu:.2f} per CPU (> {settings.idle_max_load_per_cpu:.2f})",
            "cpu",
        )
    return IdleVerdict(True, f"CPU idle: load {per_cpu:.2f} per CPU", "cpu")
