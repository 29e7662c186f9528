"""Learning-job records: one Redis hash per job, shared by the gateway, trainer and exporter.

A job moves through stages ``queued → collect → train → evaluate → export → deploy → done`` and
ends ``succeeded`` (set by the exporter after deploy), ``rejected`` (the evaluation gate said no,
set by the trainer) or ``failed``. Every write is a durable transaction, so a failover never loses
a status a caller has already been told.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from pydantic import BaseModel

from hivemind_common import keys
from hivemind_common.errors import Invalid, NotFound
from hivemind_common.jobs import JobStatus
from hivemind_common.redis import HivemindRedis

Stage = Literal["queued", "collect", "train", "evaluate", "export", "deploy", "done"]
STAGES: tuple[str, ...] = ("queued", "collect", "train", "evaluate", "export", "deploy", "done")
STATUSES: tuple[str, ...] = ("queued", "running", "succeeded", "failed", "rejected")
FINAL_STATUSES = frozenset({"succeeded", "failed", "rejected"})


class JobRecord(BaseModel):
    """What a caller may see of one learning job."""

    job_id: str
    status: JobStatus
    stage: Stage
    model: str = "default"
    tenant: str = ""  # the tenant of the key that asked; "" for the orchestrator's own jobs
    requested_by: str = ""
    reason: str = ""
    version: str | None = None
    error: str | None = None
    created_at: float
    updated_at: float
    # when the job entered each stage it has reached (epoch seconds), in stage order
    stage_started: dict[str, float] | None = None

    def public(self) -> dict[str, Any]:
        """The shape of ``GET /v1/learning/jobs/{id}`` (absent optionals left out)."""
        return self.model_dump(exclude_none=True)

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES


def _record(job_id: str, raw: dict[str, str]) -> JobRecord:
    return JobRecord(
        job_id=job_id,
        status=raw.get("status", "queued"),  # type: ignore[arg-type]
        stage=raw.get("stage", "queued"),  # type: ignore[arg-type]
        model=raw.get("model", "default"),
        tenant=raw.get("tenant", ""),
        requested_by=raw.get("requested_by", ""),
        reason=raw.get("reason", ""),
        version=raw.get("version") or None,
        error=raw.get("error") or None,
        created_at=float(raw.get("created_at", 0) or 0),
        updated_at=float(raw.get("updated_at", 0) or 0),
        stage_started=_stage_times(raw) or None,
    )


def _stage_times(raw: dict[str, str]) -> dict[str, float]:
    """``stage_at:<stage>`` fields, in stage order (a bad value is left out, never an error)."""
    out: dict[str, float] = {}
    for stage in STAGES:
        value = raw.get(f"stage_at:{stage}")
        if value is None:
            continue
        try:
            out[stage] = float(value)
        except ValueError:
            continue
    return out


async def create_job(
    redis: HivemindRedis,
    job_id: str,
    *,
    model: str = "default",
    requested_by: str = "orchestrator",
    reason: str = "",
    tenant: str = "",
) -> JobRecord:
    """Write a new ``queued`` record (idempotent: an existing record is returned unchanged)."""
    existing = await redis.hgetall(keys.job(job_id))
    if existing:
        return _record(job_id, existing)
    now = time.time()
    fields = {
        "status": "queued",
        "stage": "queued",
        "model": model,
        "tenant": tenant,
        "requested_by": requested_by,
        "reason": reason,
        "created_at": f"{now:.3f}",
        "updated_at": f"{now:.3f}",
        "stage_at:queued": f"{now:.3f}",
    }
    await redis.transaction(
        ("HSET", keys.job(job_id), *[x for kv in fields.items() for x in kv]),
        ("EXPIRE", keys.job(job_id), keys.JOB_TTL_S),
        ("ZADD", keys.jobs_index(), f"{now:.3f}", job_id),
        ("ZREMRANGEBYRANK", keys.jobs_index(), 0, -(keys.JOBS_INDEX_MAX + 1)),
        durable=True,
    )
    return _record(job_id, {k: str(v) for k, v in fields.items()})


async def get_job(redis: HivemindRedis, job_id: str) -> JobRecord:
    """The record of ``job_id`` or NotFound."""
    raw = await redis.hgetall(keys.job(job_id))
    if not raw:
        raise NotFound(f"no learning job with id {job_id!r}")
    return _record(job_id, raw)


async def update_job(
    redis: HivemindRedis,
    job_id: str,
    *,
    status: str | None = None,
    stage: str | None = None,
    version: str | None = None,
    error: str | None = None,
) -> JobRecord:
    """Change a job's status / stage / version / error; a finished job stays finished."""
    if status is not None and status not in STATUSES:
        raise Invalid(f"unknown job status {status!r}", param="status")
    if stage is not None and stage not in STAGES:
        raise Invalid(f"unknown job stage {stage!r}", param="stage")
    current = await get_job(redis, job_id)
    if current.finished and status is not None and status != current.status:
        # a late writer (a reclaimed duplicate, say) never overturns a final result
        return current
    now = f"{time.time():.3f}"
    changes: dict[str, str] = {"updated_at": now}
    if status is not None:
        changes["status"] = status
    if stage is not None:
        changes["stage"] = stage
        # the first time the job reaches a stage (a retried step keeps the first time); a plain
        # HSET decided here, since HSETNX would make the transaction unsafe to replay
        if stage not in (current.stage_started or {}):
            changes[f"stage_at:{stage}"] = now
    if version is not None:
        changes["version"] = version
    if error is not None:
        changes["error"] = error[:2000]
    await redis.transaction(
        ("HSET", keys.job(job_id), *[x for kv in changes.items() for x in kv]),
        ("EXPIRE", keys.job(job_id), keys.JOB_TTL_S),
        durable=True,
    )
    return await get_job(redis, job_id)


async def list_jobs(
    redis: HivemindRedis, *, limit: int = 20, tenant: str | None = None
) -> list[JobRecord]:
    """The most recent jobs, newest first; with ``tenant``, only jobs that tenant asked for."""
    scan = limit if tenant is None else keys.JOBS_INDEX_MAX
    ids = await redis.zrevrange(keys.jobs_index(), 0, max(0, scan - 1))
    out: list[JobRecord] = []
    for job_id in ids:
        raw = await redis.hgetall(keys.job(job_id))
        if raw and (tenant is None or raw.get("tenant") == tenant):
            out.append(_record(job_id, raw))
            if len(out) >= limit:
                break
    return out


async def tenant_learning_status(
    redis: HivemindRedis, tenant: str, *, recent: int = 5
) -> dict[str, Any]:
    """The learning status one tenant may see: its own samples and jobs, nothing suite-wide."""
    counts = await redis.hgetall(keys.tenant_learning_counts(tenant))
    share = await redis.hget(keys.tenant_settings(tenant), "share_training")
    state_version = await redis.hget(keys.learning_state(), "last_version")
    jobs = await list_jobs(redis, limit=recent, tenant=tenant)
    return {
        "model": "default",
        "samples": {
            "share_training": share == "1",
            "accepted_total": int(counts.get("accepted", 0)),
            "rejected_total": int(counts.get("rejected", 0)),
            "not_shared_total": int(counts.get("not_shared", 0)),
            "by_source": _by_source(counts, "source:"),
        },
        "orchestrator": {"last_version": state_version},
        "jobs": [j.model_dump(exclude_none=True, exclude={"requested_by"}) for j in jobs],
    }


def _by_source(raw: dict[str, str], prefix: str = "") -> dict[str, dict[str, int]]:
    """``[prefix]<source>:<outcome>`` counters as {source: {outcome: count}}."""
    out: dict[str, dict[str, int]] = {}
    for field, value in raw.items():
        if not field.startswith(prefix):
            continue
        source, sep, outcome = field[len(prefix) :].rpartition(":")
        if not sep or not source:
            continue
        try:
            out.setdefault(source, {})[outcome] = int(value)
        except ValueError:
            continue
    return dict(sorted(out.items()))


async def recent_dead_letters(redis: HivemindRedis, *, limit: int = 20) -> list[dict[str, Any]]:
    """Jobs given up on (see :mod:`hivemind_common.dead_letters`), newest first."""
    raw = await redis.lrange(keys.dead_letters(), 0, max(0, limit - 1))
    return [json.loads(item) for item in raw]


async def learning_status(redis: HivemindRedis, *, recent: int = 5) -> dict[str, Any]:
    """What the operator sees (``GET /v1/learning/status``, ``hivemind learn status``)."""
    state = await redis.hgetall(keys.learning_state())
    rejections = await redis.hgetall(keys.learning_rejections())
    sources = await redis.hgetall(keys.learning_sources())

    def num(key: str, default: float = 0) -> float:
        try:
            return float(state.get(key) or default)
        except ValueError:
            return default

    try:
        stream_len = int(await redis.xlen(keys.learning_stream()))
        groups = await redis.xinfo_groups(keys.learning_stream()) if stream_len else []
    except Exception:  # no stream yet
        stream_len, groups = 0, []
    lag = next((g.get("lag") for g in groups if g.get("name") == keys.TRAINER_GROUP), None)
    leader = await redis.get(keys.leader_lock("trainer"))
    accepted_seq, trained_seq = int(num("accepted_seq")), int(num("trained_seq"))
    return {
        "model": state.get("model", "default"),
        "samples": {
            "accepted_total": int(num("accepted_total")),
            "rejected_total": int(num("rejected_total")),
            "rejected_by_reason": {k: int(v) for k, v in rejections.items()},
            "by_source": _by_source(sources),
            "secrets_scrubbed": int(num("secrets_scrubbed")),
            "new_since_last_train": max(0, accepted_seq - trained_seq),
            "stream_length": stream_len,
            "unread": lag if lag is not None else stream_len,
        },
        "orchestrator": {
            "leader": leader,
            "threshold": int(num("threshold", 100)),
            "min_interval_s": num("min_interval_s", 3600),
            "mode": state.get("mode", "fast"),
            "last_attempt_at": num("last_attempt_at") or None,
            "last_result": state.get("last_result"),
            "last_version": state.get("last_version"),
            "failures": int(num("failures")),
            # why a due cycle has not started (the trainer's idle rule); None when none is due
            "waiting": (state.get("idle_wait") or None)
            if accepted_seq - trained_seq >= int(num("threshold", 100))
            else None,
        },
        "jobs": [j.public() for j in await list_jobs(redis, limit=recent)],
        "dead_letters": await recent_dead_letters(redis, limit=recent),
    }


__all__ = [
    "FINAL_STATUSES",
    "STAGES",
    "STATUSES",
    "JobRecord",
    "Stage",
    "create_job",
    "get_job",
    "learning_status",
    "list_jobs",
    "recent_dead_letters",
    "tenant_learning_status",
    "update_job",
]
