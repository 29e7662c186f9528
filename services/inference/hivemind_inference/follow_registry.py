"""Serve what the model registry says serves: at start-up, and whenever the two disagree.

The model registry (``keys.model_serving(name)`` and the version's manifest) is the one record
of which version of a model serves. At start-up inference loads that version (its GGUF and LoRA)
instead of the configured base; afterwards :meth:`RegistryFollower.reconcile` compares the two
every ``reconcile_interval_s`` and swaps the registry's version in when they differ (a deploy
that died between the swap and the registry update, a restart while Redis was away). It never
races a deploy: it skips a model whose deploy lock is held and holds that lock while it repairs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

from redis.exceptions import RedisError

from hivemind_common.errors import Conflict, HivemindError
from hivemind_common.model_deploy import deploy_in_progress, deploy_lock, serve_files
from hivemind_common.model_registry import ModelRegistry
from hivemind_common.redis import HivemindRedis
from hivemind_inference import metrics
from hivemind_inference.registry import LoadedModels, ModelSlot, Placement

log = logging.getLogger(__name__)

_FAILURES = (HivemindError, RedisError, OSError, TimeoutError, ValueError)
BACKOFF_MAX_S = 300.0


class RegistryFollower:
    """Keeps every served model on the version the model registry marks ``serving``."""

    def __init__(
        self, *, models: LoadedModels, redis: HivemindRedis, data_dir: Path, timeout_s: float = 5.0
    ) -> None:
        self.models = models
        self.versions = ModelRegistry(redis, data_dir)
        self.timeout_s = timeout_s
        self._failures: dict[str, int] = {}
        self._next_try: dict[str, float] = {}

    async def placement(self, name: str, version: str) -> Placement:
        """The files of ``version`` as its export chose them, checked against their sha256."""
        files = await asyncio.to_thread(serve_files, self.versions, name, version)
        lora = files.get("lora")
        return Placement(Path(str(files["gguf"])), Path(lora) if lora else None, version)

    async def _wanted(self, name: str) -> Placement | None:
        version = (await self.versions.pointers(name)).get("serving")
        return await self.placement(name, version) if version else None

    async def startup_placements(self, names: list[str]) -> dict[str, Placement]:
        """What each model should load at start-up; unreadable entries keep the configured GGUF."""
        chosen: dict[str, Placement] = {}
        for name in names:
            try:
                wanted = await asyncio.wait_for(self._wanted(name), self.timeout_s)
            except _FAILURES as exc:
                log.warning(
                    "model %s: cannot read the registry's serving version at start-up (%s); "
                    "serving the configured model until the reconciler can",
                    name,
                    exc,
                )
                metrics.RECONCILES.labels(name, "unreadable").inc()
                continue
            if wanted is not None:
                log.info("model %s: the registry says version %s serves", name, wanted.version)
                chosen[name] = wanted
        return chosen

    async def reconcile(self) -> dict[str, str]:
        """Compare every model with the registry once; repair a disagreement. Outcome by name."""
        outcomes: dict[str, str] = {}
        for name in list(self.models.slots):
            if time.monotonic() < self._next_try.get(name, 0.0):
                outcomes[name] = "backing_off"
                continue
            try:
                outcome = await self._reconcile_one(name)
            except _FAILURES as exc:
                outcome = "failed"
                failures = self._failures.get(name, 0) + 1
                self._failures[name] = failures
                self._next_try[name] = time.monotonic() + min(BACKOFF_MAX_S, 5.0 * 2**failures)
                log.error("model %s: could not reconcile with the registry: %s", name, exc)
            else:
                if outcome in ("agree", "repaired"):
                    self._failures.pop(name, None)
                    self._next_try.pop(name, None)
            if outcome != "agree":
                metrics.RECONCILES.labels(name, outcome).inc()
            outcomes[name] = outcome
        return outcomes

    async def _reconcile_one(self, name: str) -> str:
        slot = self.models.slots[name]
        wanted = (await self.versions.pointers(name)).get("serving")
        agree = not wanted or wanted == slot.current.version
        metrics.REGISTRY_AGREES.labels(name).set(1 if agree else 0)
        if agree:
            return "agree"
        if slot.swap_lock.locked() or await deploy_in_progress(self.versions, name):
            return "busy"  # a deploy is under way: it ends by making the two agree
        await self.placement(name, str(wanted))  # unservable files fail here, lock untouched
        try:
            async with deploy_lock(self.versions, name):
                return await self._repair(name, slot)
        except Conflict as exc:
            if exc.code == "deploy_in_progress":  # a deploy took the lock just now
                return "busy"
            raise

    async def _repair(self, name: str, slot: ModelSlot) -> str:
        """Under the deploy lock: read the pointer again and swap its version in."""
        wanted = (await self.versions.pointers(name)).get("serving")
        if not wanted or wanted == slot.current.version:
            return "agree"
        log.warning(
            "model %s serves version %s but the registry says %s serves; swapping it in",
            name,
            slot.current.version,
            wanted,
        )
        placement = await self.placement(name, wanted)
        await self.models.swap(
            name, gguf=placement.gguf, lora=placement.lora, version=placement.version
        )
        metrics.REGISTRY_AGREES.labels(name).set(1)
        log.warning("model %s: repaired, now serving the registry's version %s", name, wanted)
        return "repaired"

    async def run(self, interval_s: float) -> None:
        """Reconcile every ``interval_s`` until cancelled (a kept task of the lifespan)."""
        while True:
            with contextlib.suppress(*_FAILURES):
                await self.reconcile()
            await asyncio.sleep(interval_s)
