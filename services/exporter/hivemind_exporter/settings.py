"""Exporter service settings (environment variables prefixed HIVEMIND_)."""

from __future__ import annotations

from typing import Literal

from hivemind_common.model_deploy import SWAP_TIMEOUT_S
from hivemind_common.settings import ServiceSettings
from hivemind_common.task_eval import TASK_TOLERANCE

ServeChoice = Literal["auto", "adapter", "f16", "quant"]


class ExporterSettings(ServiceSettings):
    """What the export worker, the export recipe and the deploy step read."""

    service_name: str = "exporter"

    # background work (tests switch it off and drive the parts directly)
    worker_enabled: bool = True
    consumer_name: str | None = None  # default: host-pid
    poll_block_ms: int = 2_000
    reclaim_idle_ms: int = 120_000  # an export unacknowledged this long is taken over
    max_attempts: int = 3  # starts of one export job before it goes to the dead-letter list

    # export
    quant: str | None = None  # default: Q8_0 for a quantized base, else Q5_K_M
    serve: ServeChoice = "auto"  # auto: base + adapter for a quantized base, else the quant file
    write_merged: bool = False  # f16 + quantized files even when base + adapter is served
    min_agreement: float = 0.98  # top-1 agreement with PyTorch (adapter and f16)
    require_chat_stop: bool = True  # a greedy chat must end with the stop token
    threads: int | None = None
    # the task eval and losses in llama.cpp on the served files (hivemind_exporter.served_eval)
    task_eval: bool = True
    # absolute, on task F1 and style rate vs the served version (below it: noise, not worse)
    task_eval_tolerance: float = TASK_TOLERANCE
    task_eval_max_tokens: int = 128  # per answer (also bounded by 1.5x the reference's length)

    # deploy
    deploy: bool = True
    inference_url: str | None = None  # default: from the hosts registry
    swap_timeout_s: float = SWAP_TIMEOUT_S  # one load call on inference
    deploy_settle_s: float = 300.0  # after a lost answer: how long to ask what inference serves
