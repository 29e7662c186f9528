"""A cycle the threshold starts waits for an idle GPU (NVML faked) or, without NVML, for a low load
average (the real one); `hivemind learn status` says why it waits."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from hivemind_common import keys
from hivemind_trainer.idle import GpuSample, check_idle, nvml_sample
from hivemind_trainer.settings import TrainerSettings
from hivemind_trainer.worker import TrainerWorker

GIB = 1024**3


class FakeNvml:
    """The few pynvml calls the idle rule makes, answering what the test sets."""

    def __init__(self, util: float, free_gib: float, total_gib: float = 24, *, up: bool = True):
        self.util, self.free, self.total, self.up = util, free_gib, total_gib, up
        self.asked: list[int] = []
        self.open = 0

    def nvmlInit(self) -> None:
        if not self.up:
            raise RuntimeError("NVML Shared Library Not Found")
        self.open += 1

    def nvmlShutdown(self) -> None:
        self.open -= 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        self.asked.append(index)
        return index

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:
        return SimpleNamespace(gpu=self.util, memory=0)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        return SimpleNamespace(free=int(self.free * GIB), total=int(self.total * GIB), used=0)


def rule(**kw: Any) -> TrainerSettings:
    return TrainerSettings(internal_token="t", worker_enabled=False, **kw)


def test_a_busy_gpu_holds_the_cycle_and_an_idle_one_lets_it_start() -> None:
    s = rule(idle_gpu_index=1, idle_max_gpu_util_pct=20, idle_min_free_gpu_mb=4096)
    busy = FakeNvml(util=85, free_gib=20)
    verdict = check_idle(s, gpu=lambda i: nvml_sample(i, busy))
    assert not verdict.idle and verdict.device == "gpu:1"
    assert verdict.reason == "GPU 1 busy: 85% utilisation (> 20%)"
    assert busy.asked == [1] and busy.open == 0  # the GPU asked for, NVML closed again

    idle = FakeNvml(util=3, free_gib=20)
    verdict = check_idle(s, gpu=lambda i: nvml_sample(i, idle))
    assert verdict.idle and verdict.reason.startswith("GPU 1 idle: 3%")


def test_a_gpu_whose_memory_inference_holds_is_not_idle_enough() -> None:
    s = rule(idle_min_free_gpu_mb=8192)
    verdict = check_idle(s, gpu=lambda i: nvml_sample(i, FakeNvml(util=0, free_gib=6)))
    assert not verdict.idle
    assert verdict.reason == "GPU 0 short of memory: 6144 MiB free (< 8192 MiB)"


def test_without_nvml_the_real_load_average_decides() -> None:
    no_gpu = FakeNvml(util=0, free_gib=0, up=False)
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    lenient = check_idle(
        rule(idle_max_load_per_cpu=load + 1000), gpu=lambda i: nvml_sample(i, no_gpu)
    )
    assert lenient.idle and lenient.device == "cpu"
    strict = check_idle(rule(idle_max_load_per_cpu=-1), gpu=lambda i: nvml_sample(i, no_gpu))
    assert not strict.idle and strict.reason.startswith("CPU busy: load ")
    assert strict.reason.endswith("per CPU (> -1.00)")


def test_this_machine_without_nvml_falls_back_to_load(monkeypatch: pytest.MonkeyPatch) -> None:
    # The real nvml_sample on a machine with no NVIDIA driver reads nothing.
    if nvml_sample(0) is not None:
        pytest.skip("this machine has a working NVML; the fake tests cover the GPU rule")
    assert check_idle(rule(idle_max_load_per_cpu=-1)).device == "cpu"


def test_the_check_can_be_switched_off() -> None:
    verdict = check_idle(rule(idle_check=False), gpu=lambda i: GpuSample(100, 0, 1))
    assert verdict.idle


async def test_a_due_cycle_waits_on_a_busy_machine_and_learn_status_says_why(
    redis_client: Any, redis_url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hivemind_trainer.worker as worker_mod

    busy = FakeNvml(util=97, free_gib=1)
    monkeypatch.setattr(
        worker_mod, "check_idle", lambda s: check_idle(s, gpu=lambda i: nvml_sample(i, busy))
    )
    s = rule(redis_url=redis_url, data_dir=data_dir, threshold=1, min_interval_s=0)
    worker = TrainerWorker(redis_client, s)
    await worker.ensure_groups()
    await worker.publish_config()  # the threshold learn status compares with
    assert await worker.lock.acquire()
    await redis_client.hset(keys.learning_state(), mapping={"accepted_seq": 5, "trained_seq": 0})
    assert await worker.step() is None
    assert await redis_client.xlen(keys.jobs_stream()) == 0  # nothing was queued
    state = await redis_client.hgetall(keys.learning_state())
    assert state["idle_wait"] == "GPU 0 busy: 97% utilisation (> 20%)"

    from hivemind_cli.main import app

    env = {"HIVEMIND_REDIS_URL": redis_url, "COLUMNS": "200"}
    result = await asyncio.to_thread(CliRunner().invoke, app, ["learn", "status"], env=env)
    assert result.exit_code == 0, result.output
    assert "waiting: GPU 0 busy: 97% utilisation (> 20%)" in result.output

    # the GPU goes idle: the same pass queues the cycle and hands it on
    busy.util, busy.free = 2, 20
    started: list[Any] = []

    async def handle_job(msg_id: str, job: Any) -> None:
        started.append(job)

    monkeypatch.setattr(worker, "handle_job", handle_job)
    assert await worker.step() is None
    assert len(started) == 1 and started[0].reason == "threshold"
    assert (await redis_client.hgetall(keys.learning_state()))["idle_wait"] == ""
    result = await asyncio.to_thread(CliRunner().invoke, app, ["learn", "status"], env=env)
    assert "waiting" not in result.output
    await worker.lock.release()
