"""Routes of the gateway's learning surface: samples in, status, train jobs and their records."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from hivemind_common.audit import audited
from hivemind_common.auth import OperatorPrincipal, ReadPrincipal, WritePrincipal
from hivemind_common.errors import NotFound
from hivemind_common.ids import TOKEN_PATTERN
from hivemind_common.job_records import get_job, learning_status, tenant_learning_status
from hivemind_gateway.deps import ClientAddressDep, RedisDep, SettingsDep
from hivemind_gateway.learning import service
from hivemind_gateway.learning.schemas import (
    JobPublic,
    LearningStatus,
    SampleAccepted,
    SampleCreate,
    TrainQueued,
    TrainRequest,
)

router = APIRouter(prefix="/v1/learning", tags=["learning"])

JobId = Annotated[str, Path(pattern=TOKEN_PATTERN, description="the job's id")]


@router.post("/samples", response_model=SampleAccepted)
async def add_sample(
    body: SampleCreate, principal: WritePrincipal, redis: RedisDep, settings: SettingsDep
) -> SampleAccepted:
    """Queue a chat (with an optional rating or correction) for the trainer's filter."""
    sample_id = await service.submit_sample(
        redis=redis,
        tenant=principal.tenant,
        body=body,
        budget_bytes=settings.learning_mb_per_tenant_day * 2**20,
        budget_samples=settings.learning_samples_per_tenant_day,
    )
    return SampleAccepted(id=sample_id)


@router.get("/status", response_model=LearningStatus)
async def status(principal: ReadPrincipal, redis: RedisDep) -> LearningStatus:
    """The operator sees the whole suite; any other key its own tenant's samples and jobs."""
    if principal.is_operator:
        return LearningStatus.model_validate(await learning_status(redis))
    return LearningStatus.model_validate(await tenant_learning_status(redis, principal.tenant))


@router.post("/train", response_model=TrainQueued)
async def train(
    principal: OperatorPrincipal,
    redis: RedisDep,
    source: ClientAddressDep,
    body: TrainRequest | None = None,
) -> TrainQueued:
    """Queue a learning cycle now (operator); poll ``/v1/learning/jobs/{job_id}``."""
    async with audited(
        redis, "learning.train", key_id=principal.key_id, tenant=principal.tenant, source=source
    ) as entry:
        job_id = await service.queue_training(
            redis=redis,
            requested_by=f"api:{principal.key_id}",
            tenant=principal.tenant,
            body=body or TrainRequest(),
        )
        entry.target = job_id
    return TrainQueued(job_id=job_id)


@router.get("/jobs/{job_id}", response_model=JobPublic, response_model_exclude_none=True)
async def job(job_id: JobId, principal: ReadPrincipal, redis: RedisDep) -> JobPublic:
    """A learning job's status, stage, version and error; another tenant's job is 404."""
    record = await get_job(redis, job_id)
    if not principal.may_see_tenant(record.tenant):
        raise NotFound(f"no learning job with id {job_id!r}")
    return JobPublic.model_validate(record.public())
