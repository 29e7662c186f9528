"""The learning API's work: put samples and train jobs on their streams, read job records."""

from __future__ import annotations

from typing import Any

from hivemind_common import keys
from hivemind_common.job_records import create_job
from hivemind_common.jobs import LearningSample, TrainJob
from hivemind_gateway.learning.schemas import SampleCreate, TrainRequest


async def submit_sample(*, redis: Any, tenant: str, body: SampleCreate) -> str:
    """Queue one sample for the trainer's filter; returns its id."""
    sample = LearningSample(
        tenant=tenant,
        source=body.source,
        messages=[m.model_dump() for m in body.messages],  # type: ignore[misc]
        rating=body.rating,
        correction=body.correction,
    )
    await redis.xadd(
        keys.learning_stream(),
        sample.to_fields(),
        maxlen=keys.LEARNING_STREAM_MAXLEN,
        approximate=True,
    )
    return sample.id


async def queue_training(
    *, redis: Any, requested_by: str, body: TrainRequest, tenant: str = ""
) -> str:
    """Record a queued job and put it on the jobs stream; returns its id."""
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
