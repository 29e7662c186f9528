"""Trainer service settings (environment variables prefixed HIVEMIND_)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from hivemind_common.settings import ServiceSettings

Mode = Literal["fast", "balanced", "best"]
Objective = Literal["sft", "preference", "both"]


class TrainerSettings(ServiceSettings):
    """What the trainer's worker, orchestrator, filter and recipe read."""

    service_name: str = "trainer"

    # background work (tests switch it off and drive the parts directly)
    worker_enabled: bool = True
    consumer_name: str | None = None  # default: host-pid
    poll_block_ms: int = 2_000
    reclaim_idle_ms: int = 60_000  # a job unacknowledged this long is taken over
    max_attempts: int = 3  # starts of one train job before it goes to the dead-letter list

    # orchestrator
    threshold: int = 100  # new accepted samples that trigger a cycle
    min_interval_s: float = 3_600.0  # since the last attempt
    backoff_base_s: float = 600.0  # after a failure: base * 2**(failures-1), capped
    backoff_max_s: float = 6 * 3_600.0
    check_interval_s: float = 30.0
    # a cycle the threshold starts waits until the machine is idle enough (hivemind_trainer.idle)
    idle_check: bool = True
    idle_gpu_index: int = 0  # the GPU the trainer uses (NVML index)
    idle_max_gpu_util_pct: float = 20.0
    idle_min_free_gpu_mb: int = 4_096  # what training needs beside what inference holds
    idle_max_load_per_cpu: float = 0.8  # 1-minute load average per CPU (no NVML)

    # filter
    min_tokens: int = 4
    max_tokens: int = 2_048
    min_rating: float = 0.5  # ratings are 0..1 (or -1..1); below this a sample is rejected
    near_dup_threshold: float = 0.9  # Jaccard of word 5-gram shingles

    # model and recipe
    model_name: str = "default"
    base_gguf: Path | None = None  # default: the shipped SmolLM2 GGUF
    base_hf_dir: Path | None = None  # a Hugging Face directory instead of a GGUF
    mode: Mode = "fast"
    # bounded: a value out of range failed jobs far from where it was set (a negative replay
    # ratio in the sampler, a zero checkpoint interval in a modulo mid-training)
    seq_len: int = Field(default=512, ge=16, le=131_072)
    replay_ratio: float = Field(default=0.25, ge=0, le=10)
    heldout_fraction: float = Field(default=0.1, ge=0, le=0.9)
    threads: int | None = Field(default=None, ge=1, le=1024)  # torch threads; default: all
    max_steps: int | None = Field(default=None, ge=1)  # caps the recipe (tests, benchmarks)
    checkpoint_every: int = Field(default=50, ge=1)
    seed: int = 1234

    # evaluation gate
    # the general set's answers (hivemind_trainer.gate): their accuracy within 2 points of the
    # base's, each kind's (knowledge, reasoning, code, ...) within 5, their loss within 10% (a
    # taught style moves it: +6% for a captain's style whose answers' accuracy did not move)
    general_accuracy_tolerance: float = 0.02
    general_kind_tolerance: float = 0.05
    general_tolerance: float = 0.10
    heldout_tolerance: float = 0.0  # no worse on held-out

    # the task eval (answers scored against references on the served files, by the exporter)
    task_eval_file: Path | None = None  # a user's eval set (any `learn import` format)
    task_eval_items: int = 24  # held-out prompts answered per version
    task_eval_general_items: int = 8  # prompts unlike the training data (reported)
    served_loss_chats: int = 96  # held-out and general chats whose loss llama.cpp measures

    # preference learning (corrections -> DPO pairs, ratings -> KTO), on top of the SFT adapter
    learning_objective: Objective = "both"  # sft only, preference only, or sft then preference
    preference_min_pairs: int = 16  # train pairs that start a DPO stage
    preference_min_rated: int = 32  # rated answers (good and bad) that start a KTO stage
    preference_steps: int = 32
    preference_lr: float = 1e-4
    preference_beta: float = 0.1
    preference_batch_size: int = 4
    preference_tolerance: float = 0.0  # held-out preference accuracy no worse than served

    @property
    def datasets_dir(self) -> Path:
        return self.data_dir / "datasets"

    @property
    def work_dir(self) -> Path:
        """Checkpoints of running jobs."""
        return self.data_dir / "trainer" / "jobs"
