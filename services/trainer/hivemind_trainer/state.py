"""The trainer service's state: one typed object, made once by the lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from hivemind_common.redis import HivemindRedis
from hivemind_trainer.settings import TrainerSettings
from hivemind_trainer.worker import TrainerWorker


@dataclass(eq=False)
class TrainerState:
    """What one trainer process holds (``app.state.trainer``); ``worker`` is None when the
    process only answers health and metrics (``worker_enabled`` off)."""

    settings: TrainerSettings
    redis: HivemindRedis
    worker: TrainerWorker | None = None
