"""Deploy a registered version: ask inference to hot-swap it in, then switch the registry.

Used by the exporter (after an export) and by the gateway's promote / rollback routes. One
deploy of a model runs at a time (a Redis lock). A failed swap leaves the serving copy and the
registry's serving pointer as they were and marks the version ``failed``. Deploying the version
that already serves is a no-op, which makes a retried or reclaimed deploy job harmless.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from hivemind_common import keys
from hivemind_common.errors import (
    Conflict,
    HivemindError,
    Timeout,
    Unavailable,
    UpstreamError,
)
from hivemind_common.model_registry import ModelRegistry, sha256_file

log = logging.getLogger(__name__)

DEPLOY_LOCK_MS = 300_000


@dataclass
class DeployResult:
    """What a deploy did: the version now serving, the one before, and the swap time."""

    name: str
    version: str
    previous_version: str | None
    swap_ms: float | None
    already_serving: bool = False

    def public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "previous_version": self.previous_version,
            "swap_ms": self.swap_ms,
            "already_serving": self.already_serving,
        }


def serve_files(registry: ModelRegistry, name: str, version: str) -> dict[str, str | None]:
    """The ``{gguf, lora}`` the exporter chose for a version, each checked against its sha256."""
    manifest = registry.read_manifest(name, version)
    serve = manifest.get("serve")
    if not isinstance(serve, dict) or not serve.get("gguf"):
        raise Conflict(f"{name}/{version} has not been exported yet")
    sums: dict[str, str] = manifest.get("files") or {}
    version_dir = registry.version_dir(name, version)
    for role in ("gguf", "lora"):
        value = serve.get(role)
        if not value:
            continue
        path = Path(value)
        if not path.is_file():
            raise Conflict(f"{name}/{version}: {role} file {path} is missing")
        try:
            relative = str(path.relative_to(version_dir))
        except ValueError:
            continue  # the base GGUF lives outside the version folder
        if relative in sums and sha256_file(path) != sums[relative]:
            raise Conflict(f"{name}/{version}: {relative} does not match its sha256")
    return {"gguf": str(serve["gguf"]), "lora": serve.get("lora") or None}


async def _acquire(registry: ModelRegistry, name: str) -> str:
    token = os.urandom(8).hex()
    ok = await registry.redis.set(keys.model_deploy_lock(name), token, nx=True, px=DEPLOY_LOCK_MS)
    if not ok:
        raise Conflict(f"another deploy of model {name} is running", code="deploy_in_progress")
    return token


async def _release(registry: ModelRegistry, name: str, token: str) -> None:
    lock = keys.model_deploy_lock(name)
    if await registry.redis.get(lock) == token:  # only our own lock; it may have expired
        await registry.redis.delete(lock)


async def swap_in(
    client: httpx.AsyncClient, name: str, version: str, files: dict[str, str | None], timeout: float
) -> dict[str, Any]:
    """``POST /admin/models/{name}/load`` on inference; ours errors on any failure."""
    body = {"gguf": files["gguf"], "lora": files.get("lora"), "version": version}
    try:
        response = await client.post(f"/admin/models/{name}/load", json=body, timeout=timeout)
    except httpx.TimeoutException as exc:
        raise Timeout(f"inference did not finish swapping in {name}/{version}") from exc
    except httpx.HTTPError as exc:
        raise Unavailable(f"inference unreachable while deploying {name}/{version}") from exc
    if response.status_code != 200:
        raise UpstreamError(
            f"inference refused {name}/{version} ({response.status_code}): {response.text[:500]}"
        )
    data: dict[str, Any] = response.json()
    return data


async def served_version(client: httpx.AsyncClient, name: str) -> str | None:
    """The version inference serves as ``name`` now (None when it cannot say)."""
    try:
        response = await client.get("/admin/models", timeout=10.0)
        response.raise_for_status()
        for model in response.json().get("data", []):
            if model.get("name") == name:
                return str(model.get("version"))
    except (httpx.HTTPError, ValueError, AttributeError):
        log.warning("could not read the served version of %s from inference", name)
    return None


async def deploy_version(
    *,
    registry: ModelRegistry,
    client: httpx.AsyncClient,
    name: str,
    version: str,
    timeout: float = 180.0,
    mark_failed: bool = True,
) -> DeployResult:
    """Hot-swap ``version`` into inference and make it the registry's serving version."""
    mv = await registry.get(name, version)
    if mv.status == "rejected":
        raise Conflict(f"{name}/{version} was rejected by the evaluation gate")
    pointers = await registry.pointers(name)
    if pointers.get("serving") == version:
        return DeployResult(name, version, pointers.get("previous"), None, already_serving=True)
    files = serve_files(registry, name, version)
    token = await _acquire(registry, name)
    try:
        started = time.perf_counter()
        if await served_version(client, name) == version:
            # swapped in by a deploy that died before it could update the registry
            switched = await registry.mark_serving(name, version)
            return DeployResult(name, version, switched.get("previous"), None, True)
        try:
            answer = await swap_in(client, name, version, files, timeout)
        except HivemindError as exc:
            log.warning(
                "deploy failed", extra={"model": name, "version": version, "error": str(exc)}
            )
            if mark_failed and version not in (await registry.pointers(name)).values():
                await registry.set_status(name, version, "failed", error=exc.message)
            raise
        switched = await registry.mark_serving(name, version)
    finally:
        await _release(registry, name, token)
    swap_ms = answer.get("swap_ms")
    log.info(
        "deployed model version",
        extra={
            "model": name,
            "version": version,
            "swap_ms": swap_ms,
            "total_ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )
    return DeployResult(name, version, switched.get("previous"), swap_ms)


async def rollback_model(
    *, registry: ModelRegistry, client: httpx.AsyncClient, name: str, timeout: float = 180.0
) -> DeployResult:
    """Swap the previous version back in; the rolled-back one becomes previous."""
    previous = (await registry.pointers(name)).get("previous")
    if not previous:
        raise Conflict(f"model {name} has no previous version to roll back to")
    return await deploy_version(
        registry=registry,
        client=client,
        name=name,
        version=previous,
        timeout=timeout,
        mark_failed=False,
    )


__all__ = [
    "DeployResult",
    "deploy_version",
    "rollback_model",
    "serve_files",
    "served_version",
    "swap_in",
]
