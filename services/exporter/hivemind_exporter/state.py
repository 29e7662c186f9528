"""The exporter service's state: one typed object, made once by the lifespan."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import httpx

from hivemind_common.redis import HivemindRedis
from hivemind_exporter.settings import ExporterSettings
from hivemind_exporter.worker import ExportWorker


@dataclass(eq=False)
class ExporterState:
    """What one exporter process holds (``app.state.exporter``)."""

    settings: ExporterSettings
    redis: HivemindRedis
    inference: httpx.AsyncClient
    worker: ExportWorker
    tasks: set[asyncio.Task[None]] = field(default_factory=set)  # the running worker, if any
