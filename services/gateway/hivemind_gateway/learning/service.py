"""The learning API's work: put samples and train jobs on their streams, read job records."""

from __future__ import annotations

from typing import Any

from hivemind_common import keys
from hivemind_common.errors import TooManyRequests
from hivemind_common.job_records import create_job
from hivemind_common.jobs import LearningSample, TrainJob
from hivemind_common.recipe_overrides import check_overrides
from hivemind_gateway.learning import budget
from hivemind_gateway.learning.schemas import SampleCreate, TrainRequest


async def submit_sample(
    *, redis: Any, tenant: str, body: SampleCreate, budget_bytes: int = 0, budget_samples: int = 0
) -> str:
    """Queue one sample for the trainer's filter; returns its id. ``budget_bytes`` and
    ``budget_samples``: what the tenant may queue a day (0: no limit); past either,
    TooManyRequests until the day turns."""
    sample = LearningSample(
        tenant=tenant,
        source=body.source,
        messages=[m.model_dump() for m in body.messages],  # type: ignore[misc]
        rating=body.rating,
        correction=body.correction,
    )
    fields = sample.to_fields()
    size = budget.stored_bytes(fields)
    spent = await budget.charge(redis, tenant, size, budget_bytes, budget_samples)
    if spent is not None:
        raise TooManyRequests(
            budget.refusal(tenant, spent, budget_bytes, budget_samples), retry_after=spent.wait_s
        )
    # a durable write: in strong mode an entry no replica acknowledged is a retryable 503, never
    # a 2xx (a client's retry may queue it twice; the collector drops the duplicate by content)
    await redis.transaction(
        (
            "XADD",
            keys.learning_stream(),
            "MAXLEN",
            "~",
            keys.LEARNING_STREAM_MAXLEN,
            "*",
            *[x for kv in fields.items() for x in kv],
        ),
        durable=True,
    )
    return sample.id


async def queue_training(
    *, redis: Any, requested_by: str, body: TrainRequest, tenant: str = ""
) -> str:
    """Record a queued job and put it on the jobs stream; returns its id."""
    check_overrides(body.overrides)  # a 400 now, not a job that fails (or trains on NaN) later
    job = TrainJob(
        model=body.model, requested_by=requested_by, reason="manual", overrides=body.overrides
    )
    await create_job(
        redis,
        job.job_id,
        model=job.model,
        requested_by=requested_by,
        reason="manual",
        tenant=tenant,
    )
    await redis.xadd(
        keys.jobs_stream(), job.to_fields(), maxlen=keys.JOBS_STREAM_MAXLEN, approximate=True
    )
    return job.job_id
