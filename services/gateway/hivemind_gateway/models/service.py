"""The models surface's work: list registry versions, promote one, roll back (no fastapi here)."""

from __future__ import annotations

from pathlib import Path

import httpx

from hivemind_common.model_deploy import (
    SWAP_TIMEOUT_S,
    DeployResult,
    deploy_version,
    rollback_model,
)
from hivemind_common.model_registry import ModelRegistry, ModelVersion, check_name
from hivemind_common.redis import HivemindRedis


async def list_versions(
    redis: HivemindRedis, data_dir: Path, *, name: str | None = None
) -> list[ModelVersion]:
    """Every version of one model (or of all models), oldest first."""
    return await ModelRegistry(redis, data_dir).list(check_name(name) if name else None)


async def promote(
    redis: HivemindRedis, data_dir: Path, inference: httpx.AsyncClient, *, name: str, version: str
) -> DeployResult:
    """Serve ``version`` (the challenger) now; the champion becomes previous."""
    registry = ModelRegistry(redis, data_dir)
    return await deploy_version(
        registry=registry,
        client=inference,
        name=check_name(name),
        version=check_name(version, "version"),
        timeout=SWAP_TIMEOUT_S,
    )


async def rollback(
    redis: HivemindRedis, data_dir: Path, inference: httpx.AsyncClient, *, name: str
) -> DeployResult:
    """Serve the previous version again."""
    registry = ModelRegistry(redis, data_dir)
    return await rollback_model(
        registry=registry, client=inference, name=check_name(name), timeout=SWAP_TIMEOUT_S
    )
