"""The export worker: consume export jobs from a Redis Stream group, export, validate, deploy.

Jobs are acknowledged only after they finish (succeeded or failed for good). A job left pending
by a worker that died is taken over with XAUTOCLAIM once it has been idle ``reclaim_idle_ms``.
Every step checks the state first, so a reclaimed job never exports or deploys twice: a version
that already serves only gets its job marked succeeded; a version already exported (files
matching their recorded sha256) goes straight to deploy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import ValidationError

from hivemind_common import keys
from hivemind_common.dead_letters import bury, count_start, keep_claimed, poison_reason
from hivemind_common.errors import HivemindError, NotFound
from hivemind_common.job_records import get_job, update_job
from hivemind_common.jobs import ExportJob
from hivemind_common.model_deploy import deploy_version, serve_files
from hivemind_common.model_registry import ModelRegistry
from hivemind_common.redis import HivemindRedis
from hivemind_exporter.metrics import DEPLOYS, EXPORT_AGREEMENT, EXPORT_JOBS, EXPORT_STAGE_SECONDS
from hivemind_exporter.recipe import ExportConfig, run_export
from hivemind_exporter.served_eval import TaskEvalRejected, metrics_of
from hivemind_exporter.settings import ExporterSettings

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """How one job ended: ``succeeded``, ``exported`` (no deploy asked), ``skipped``, ``failed``."""

    job_id: str
    version: str | None
    result: str
    detail: str = ""


def default_consumer() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class ExportWorker:
    """One consumer of ``keys.export_stream()`` in group ``keys.EXPORTER_GROUP``."""

    def __init__(
        self,
        *,
        redis: HivemindRedis,
        settings: ExporterSettings,
        inference: httpx.AsyncClient | None,
        consumer: str | None = None,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.inference = inference
        self.registry = ModelRegistry(redis, settings.data_dir)
        self.consumer = consumer or settings.consumer_name or default_consumer()
        self._export_lock = asyncio.Lock()  # one export at a time per process: it is heavy

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(
                keys.export_stream(), keys.EXPORTER_GROUP, id="0", mkstream=True
            )
        except Exception as exc:  # BUSYGROUP: it exists already
            if "BUSYGROUP" not in str(exc):
                raise

    async def reclaim(self) -> list[tuple[str, dict[str, Any]]]:
        """Entries another consumer left pending for longer than ``reclaim_idle_ms``."""
        answer = await self.redis.xautoclaim(
            keys.export_stream(),
            keys.EXPORTER_GROUP,
            self.consumer,
            min_idle_time=self.settings.reclaim_idle_ms,
            start_id="0-0",
            count=10,
        )
        return [(entry_id, fields) for entry_id, fields in answer[1] if fields]

    async def read_new(self, block_ms: int | None = None) -> list[tuple[str, dict[str, Any]]]:
        answer = await self.redis.xreadgroup(
            keys.EXPORTER_GROUP,
            self.consumer,
            {keys.export_stream(): ">"},
            count=1,
            block=block_ms if block_ms is not None else self.settings.poll_block_ms,
        )
        return [(entry_id, fields) for _, entries in answer or [] for entry_id, fields in entries]

    async def run_once(self, block_ms: int | None = None) -> list[Outcome]:
        """Reclaim stale entries, read new ones, handle and acknowledge each."""
        await self.ensure_group()
        entries = await self.reclaim() + await self.read_new(block_ms)
        outcomes = []
        for entry_id, fields in entries:
            heartbeat = asyncio.create_task(self._keep_claimed(entry_id))
            try:
                outcome = await self.handle(fields, entry_id)
            finally:
                heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await heartbeat  # a failed heartbeat only risks a reclaim: never fatal
            EXPORT_JOBS.labels(result=outcome.result).inc()
            outcomes.append(outcome)
            await self.redis.xack(keys.export_stream(), keys.EXPORTER_GROUP, entry_id)
        return outcomes

    async def _keep_claimed(self, entry_id: str) -> None:
        """Reset the entry's idle time while we work on it, so no other worker reclaims it."""
        await keep_claimed(
            self.redis, keys.export_stream(), keys.EXPORTER_GROUP, self.consumer, entry_id,
            interval_s=max(self.settings.reclaim_idle_ms / 3000, 0.5),
        )  # fmt: skip

    async def run_forever(self) -> None:
        """The background loop of the service; errors are logged and the loop goes on."""
        backoff = 1.0
        while True:
            try:
                await self.run_once()
                backoff = 1.0
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("export worker loop failed; retrying in %.0fs", backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 60.0)

    async def handle(self, fields: dict[str, Any], entry_id: str = "") -> Outcome:
        """Run one export job to its end; never raises for a job's own failure."""
        try:
            job = ExportJob.from_fields(fields)
        except (ValidationError, ValueError) as exc:
            log.error("dropping malformed export job: %s", exc)
            return Outcome(job_id="?", version=None, result="failed", detail="malformed payload")
        try:
            return await self._handle(job, entry_id)
        except TaskEvalRejected as exc:
            await self._reject(job, exc)
            return Outcome(job.job_id, job.version, "rejected", exc.message)
        except HivemindError as exc:
            await self._fail(job, exc.message)
            return Outcome(job.job_id, job.version, "failed", exc.message)
        except Exception as exc:  # a bug or a foreign error: the job fails, the worker lives
            log.exception("export job %s crashed", job.job_id)
            await self._fail(job, f"{type(exc).__name__}: {exc}")
            return Outcome(job.job_id, job.version, "failed", str(exc))

    async def _job_update(self, job_id: str, **fields: Any) -> None:
        try:
            await update_job(self.redis, job_id, **fields)
        except NotFound:
            log.warning("export job %s has no job record", job_id)

    async def _reject(self, job: ExportJob, exc: TaskEvalRejected) -> None:
        """The task eval on the served files found the candidate worse: the version is
        rejected (kept for inspection, never deployed) and the job ends rejected."""
        error = f"task eval on the served files: {exc.message}"
        try:
            report = (exc.extra or {}).get("task_eval")
            if report:
                mv = await self.registry.get(job.model, job.version)
                await self.registry.update(
                    job.model, job.version, metrics={**mv.metrics, **metrics_of(report)}
                )
            await self.registry.set_status(job.model, job.version, "rejected", error=error)
        except HivemindError:
            log.warning("could not mark %s/%s rejected", job.model, job.version)
        await self._job_update(job.job_id, status="rejected", stage="done", error=error)

    async def _fail(self, job: ExportJob, error: str) -> None:
        try:
            pointers = await self.registry.pointers(job.model)
            if job.version not in pointers.values():
                await self.registry.set_status(job.model, job.version, "failed", error=error)
        except HivemindError:
            log.warning("could not mark %s/%s failed", job.model, job.version)
        await self._job_update(job.job_id, status="failed", error=error)

    async def _handle(self, job: ExportJob, entry_id: str) -> Outcome:
        try:
            record = await get_job(self.redis, job.job_id)
            if record.finished:
                return Outcome(job.job_id, job.version, "skipped", f"job already {record.status}")
        except NotFound:
            pass
        attempts = await count_start(self.redis, job.job_id, "export")
        if attempts > self.settings.max_attempts:
            letter = await bury(
                self.redis,
                job_id=job.job_id,
                kind="export",
                attempts=attempts - 1,
                reason=poison_reason("export", attempts - 1, "export"),
                stream=keys.export_stream(),
                group=keys.EXPORTER_GROUP,
                entry_id=entry_id,
            )
            await self._fail(job, letter["reason"])
            return Outcome(job.job_id, job.version, "failed", letter["reason"])
        mv = await self.registry.get(job.model, job.version)
        if mv.status == "serving" or (mv.model_extra or {}).get("served_at"):
            # a worker died after deploying: finish the record only. Served once and since
            # replaced (a rollback, a promote, a newer export while this job waited for its
            # reclaim) counts too: deploying it again would undo what replaced it
            await self._job_update(job.job_id, status="succeeded", stage="done", version=mv.version)
            what = "already serving" if mv.status == "serving" else f"served, now {mv.status}"
            return Outcome(job.job_id, job.version, "skipped", what)
        if mv.status == "rejected":
            raise HivemindError(f"{job.model}/{job.version} was rejected by the gate")
        await self._job_update(job.job_id, status="running", stage="export", version=job.version)
        if not self._already_exported(job):
            await self.export(job)
        if not self.settings.deploy or self.inference is None:
            await self._job_update(job.job_id, status="succeeded", stage="done")
            return Outcome(job.job_id, job.version, "exported")
        await self._job_update(job.job_id, stage="deploy")
        started = time.perf_counter()
        try:
            deployed = await deploy_version(
                registry=self.registry,
                client=self.inference,
                name=job.model,
                version=job.version,
                timeout=self.settings.swap_timeout_s,
                settle_s=self.settings.deploy_settle_s,
                lock_wait_s=self.settings.swap_timeout_s,  # a promote or a repair may hold it
            )
        except HivemindError:
            DEPLOYS.labels(result="failed").inc()
            raise
        DEPLOYS.labels(result="succeeded").inc()
        deploy_s = round(time.perf_counter() - started, 3)
        await self.registry.update(
            job.model, job.version, deploy={"swap_ms": deployed.swap_ms, "seconds": deploy_s}
        )
        await self._job_update(job.job_id, status="succeeded", stage="done")
        return Outcome(job.job_id, job.version, "succeeded")

    async def _served_files(self, name: str, version: str) -> dict[str, Any]:
        """What serves now (the task eval's other side); none: the base alone."""
        serving = (await self.registry.pointers(name)).get("serving")
        if not serving or serving == version:
            return {"served_files": None, "served_version": None}
        try:
            return {
                "served_files": serve_files(self.registry, name, serving),
                "served_version": serving,
            }
        except HivemindError as exc:
            log.warning("the task eval compares with the base: %s", exc)
            return {"served_files": None, "served_version": None}

    def _already_exported(self, job: ExportJob) -> bool:
        try:
            manifest = self.registry.read_manifest(job.model, job.version)
            if not (manifest.get("export", {}).get("validation", {}).get("passed")):
                return False
            serve_files(self.registry, job.model, job.version)  # present, sha256 matching
            return True
        except HivemindError:
            return False

    async def export(self, job: ExportJob) -> None:
        """Export one version off the event loop, then record its files' sha256."""
        config = ExportConfig(
            name=job.model,
            version=job.version,
            quant=job.quant or self.settings.quant,
            serve=self.settings.serve,
            min_agreement=self.settings.min_agreement,
            require_chat_stop=self.settings.require_chat_stop,
            threads=self.settings.threads,
            write_merged=self.settings.write_merged or job.quant is not None,
            task_eval=self.settings.task_eval,
            task_eval_tolerance=self.settings.task_eval_tolerance,
            task_eval_max_tokens=self.settings.task_eval_max_tokens,
            **await self._served_files(job.model, job.version),
        )
        async with self._export_lock:
            result = await asyncio.to_thread(run_export, config, self.registry)
        for stage, seconds in result.timings.items():
            EXPORT_STAGE_SECONDS.labels(stage=stage).observe(seconds)
        for file in ("adapter", "f16", "adapter_on_served_base"):  # the last: reported only
            if file in result.validation:
                EXPORT_AGREEMENT.labels(file=file).set(result.validation[file]["top1_agreement"])
        await self.registry.record_files(job.model, job.version)
        await self.registry.update(job.model, job.version, export=result.timings)
        if result.task_eval is not None:
            mv = await self.registry.get(job.model, job.version)
            await self.registry.update(
                job.model, job.version, metrics={**mv.metrics, **metrics_of(result.task_eval)}
            )
        log.info(
            "exported model version",
            extra={"model": job.model, "version": job.version, "timings": result.timings},
        )
