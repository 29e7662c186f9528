"""Routes of the gateway's models surface: registry versions, promote, rollback.

Registered before the OpenAI ``/v1/models/{id}`` route so ``/v1/models/versions`` is not taken
for a model id; these paths answer problem+json.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from hivemind_common.audit import audited
from hivemind_common.auth import OperatorPrincipal, ReadPrincipal
from hivemind_common.ids import NAME_PATTERN
from hivemind_gateway.deps import ClientAddressDep, InferenceHttpDep, RedisDep, SettingsDep
from hivemind_gateway.models import service
from hivemind_gateway.models.schemas import (
    DeployPublic,
    ModelVersionPublic,
    ModelVersionsPublic,
    PromoteRequest,
)

router = APIRouter(prefix="/v1/models", tags=["models"])

ModelName = Annotated[str, Path(pattern=NAME_PATTERN, description="A served model's name.")]


@router.get("/versions")
async def list_model_versions(
    principal: ReadPrincipal,
    redis: RedisDep,
    settings: SettingsDep,
    name: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
) -> ModelVersionsPublic:
    """Every trained version with its status and metrics."""
    versions = await service.list_versions(redis, settings.data_dir, name=name)
    data = [ModelVersionPublic.model_validate(mv.public()) for mv in versions]
    return ModelVersionsPublic(data=data, count=len(data))


@router.post("/{name}/promote")
async def promote_model_version(
    name: ModelName,
    body: PromoteRequest,
    principal: OperatorPrincipal,
    redis: RedisDep,
    settings: SettingsDep,
    inference: InferenceHttpDep,
    source: ClientAddressDep,
) -> DeployPublic:
    """Hot-swap a registered version in; the serving one becomes previous (operator)."""
    async with audited(
        redis,
        "models.promote",
        key_id=principal.key_id,
        tenant=principal.tenant,
        source=source,
        target=f"{name}@{body.version}",
    ):
        result = await service.promote(
            redis, settings.data_dir, inference, name=name, version=body.version
        )
    return DeployPublic.model_validate(result.public())


@router.post("/{name}/rollback")
async def rollback_model_version(
    name: ModelName,
    principal: OperatorPrincipal,
    redis: RedisDep,
    settings: SettingsDep,
    inference: InferenceHttpDep,
    source: ClientAddressDep,
) -> DeployPublic:
    """Serve the previous version again (operator)."""
    async with audited(
        redis,
        "models.rollback",
        key_id=principal.key_id,
        tenant=principal.tenant,
        source=source,
        target=name,
    ) as entry:
        result = await service.rollback(redis, settings.data_dir, inference, name=name)
        entry.detail = f"version={result.version}"
    return DeployPublic.model_validate(result.public())
