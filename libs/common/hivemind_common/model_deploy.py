"""Deploy a registered version: ask inference to hot-swap it in, then switch the registry.

Used by the exporter (after an export) and by the gateway's promote / rollback routes. One
deploy of a model runs at a time (a Redis lock). A failed swap leaves the serving copy and the
registry's serving pointer as they were and marks the version ``failed``. Deploying the version
that already serves is a no-op, which makes a retried or reclaimed deploy job harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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

SWAP_TIMEOUT_S = 180.0  # how long inference may take to load, smoke-test and switch a version


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
    # the manifest keeps the choice of files even when the export's checks failed (it records
    # why): such files are never served, by a promote, a rollback or the registry's follower
    export = manifest.get("export")
    if isinstance(export, dict):
        validation = export.get("validation")
        if not isinstance(validation, dict) or validation.get("passed") is not True:
            raise Conflict(f"{name}/{version} did not pass its export validation")
    task_eval = manifest.get("task_eval")
    if isinstance(task_eval, dict) and task_eval.get("passed") is False:
        raise Conflict(f"{name}/{version} was refused by the task eval")
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


async def _try_acquire(registry: ModelRegistry, name: str, token: str, ttl_ms: int) -> bool:
    lock = keys.model_deploy_lock(name)
    return bool(await registry.redis.set(lock, token, nx=True, px=ttl_ms))


async def _release(registry: ModelRegistry, name: str, token: str) -> None:
    lock = keys.model_deploy_lock(name)
    if await registry.redis.get(lock) == token:  # only our own lock; it may have expired
        await registry.redis.delete(lock)


@asynccontextmanager
async def deploy_lock(
    registry: ModelRegistry, name: str, *, wait_s: float = 0.0, ttl_ms: int = keys.DEPLOY_LOCK_MS
) -> AsyncIterator[str]:
    """Hold the model's deploy lock (waiting up to ``wait_s`` for it); Conflict when busy."""
    token = os.urandom(8).hex()
    deadline = time.monotonic() + wait_s
    delay = 0.05
    while not await _try_acquire(registry, name, token, ttl_ms):
        if time.monotonic() >= deadline:
            raise Conflict(f"another deploy of model {name} is running", code="deploy_in_progress")
        await asyncio.sleep(delay)  # bounded: the lock holder finishes or its lease expires
        delay = min(delay * 2, 1.0)
    renewer = asyncio.create_task(_keep_lock(registry, name, token, ttl_ms))
    try:
        yield token
    finally:
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await renewer
        await _release(registry, name, token)


async def _keep_lock(registry: ModelRegistry, name: str, token: str, ttl_ms: int) -> None:
    """Extend our lock every third of its TTL, so a long deploy keeps it and a dead one frees it."""
    lock = keys.model_deploy_lock(name)
    while True:
        await asyncio.sleep(ttl_ms / 3000)
        try:
            if await registry.redis.get(lock) != token:
                return
            await registry.redis.pexpire(lock, ttl_ms)
        except Exception as exc:  # a missed renewal only shortens the lease
            log.warning("could not renew the deploy lock of %s: %s", name, exc)


async def deploy_in_progress(registry: ModelRegistry, name: str) -> bool:
    """Whether some deploy / promote / rollback of ``name`` holds the lock now."""
    return bool(await registry.redis.exists(keys.model_deploy_lock(name)))


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
    if response.status_code == 409:
        code = _problem_code(response)
        if code in ("swap_busy", "version_in_use"):
            raise Conflict(f"inference: {response.text[:300]}", code=code)
    if response.status_code != 200:
        raise UpstreamError(
            f"inference refused {name}/{version} ({response.status_code}): {response.text[:500]}"
        )
    data: dict[str, Any] = response.json()
    return data


def _problem_code(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    code = body.get("code") if isinstance(body, dict) else None
    return str(code) if code else None


async def model_state(client: httpx.AsyncClient, name: str) -> dict[str, Any] | None:
    """Inference's description of model ``name`` (version, swapping_to, ...); None if unknown."""
    try:
        response = await client.get("/admin/models", timeout=10.0)
        response.raise_for_status()
        for model in response.json().get("data", []):
            if model.get("name") == name or name in (model.get("aliases") or []):
                return dict(model)
    except (httpx.HTTPError, ValueError, AttributeError):
        log.warning("could not read the served version of %s from inference", name)
    return None


async def served_version(client: httpx.AsyncClient, name: str) -> str | None:
    """The version inference serves as ``name`` now (None when it cannot say)."""
    state = await model_state(client, name)
    return str(state["version"]) if state and state.get("version") else None


async def _settle(
    client: httpx.AsyncClient, name: str, version: str, deadline: float
) -> str | None:
    """Wait until inference can say what it serves and is not swapping to ``version``.

    Returns the version it serves then, or None when it did not answer before ``deadline``.
    """
    delay = 0.1
    while True:
        state = await model_state(client, name)
        if state is not None and state.get("swapping_to") != version:
            return str(state.get("version"))
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)


async def _swap_until_served(
    client: httpx.AsyncClient,
    name: str,
    version: str,
    files: dict[str, str | None],
    *,
    timeout: float,
    settle_s: float,
) -> dict[str, Any]:
    """Ask inference to serve ``version``; when the answer is lost, ask what it serves.

    Raises only when inference refused the version (UpstreamError) or did not serve it by the
    deadline; a load whose answer timed out but which went through counts as served.
    """
    deadline = time.monotonic() + settle_s
    while True:
        try:
            return await swap_in(client, name, version, files, timeout)
        except Conflict as exc:
            if exc.code == "version_in_use":
                return {"version": version, "swap_ms": None, "confirmed": "already serving"}
            lost: HivemindError = exc  # another swap runs: wait for it, then try again
        except (Timeout, Unavailable) as exc:
            lost = exc
        serving = await _settle(client, name, version, deadline)
        if serving == version:
            log.info("inference serves %s/%s although its answer was lost", name, version)
            return {"version": version, "swap_ms": None, "confirmed": "after a lost answer"}
        if time.monotonic() >= deadline:
            raise lost
        log.warning("inference does not serve %s/%s yet (%s); trying again", name, version, lost)


async def deploy_version(
    *,
    registry: ModelRegistry,
    client: httpx.AsyncClient,
    name: str,
    version: str,
    timeout: float = SWAP_TIMEOUT_S,
    settle_s: float = 300.0,
    lock_wait_s: float = 0.0,
    mark_failed: bool = True,
) -> DeployResult:
    """Hot-swap ``version`` into inference and make it the registry's serving version.

    Every step checks first, so a retried deploy converges: a version inference already serves
    is only recorded; one whose load answer was lost (``timeout``) is confirmed by asking
    inference for up to ``settle_s``. The version is marked ``failed`` only when inference
    refused it or still does not serve it at the deadline.
    """
    mv = await registry.get(name, version)
    if mv.status == "rejected":
        raise Conflict(f"{name}/{version} was rejected by the evaluation gate")
    pointers = await registry.pointers(name)
    if pointers.get("serving") == version and await served_version(client, name) in (
        version,
        None,
    ):
        return DeployResult(name, version, pointers.get("previous"), None, already_serving=True)
    files = serve_files(registry, name, version)
    async with deploy_lock(registry, name, wait_s=lock_wait_s):
        started = time.perf_counter()
        if await served_version(client, name) == version:
            # swapped in by a deploy that died before it could update the registry
            switched = await registry.mark_serving(name, version)
            return DeployResult(name, version, switched.get("previous"), None, True)
        try:
            answer = await _swap_until_served(
                client, name, version, files, timeout=timeout, settle_s=settle_s
            )
        except HivemindError as exc:
            log.warning(
                "deploy failed", extra={"model": name, "version": version, "error": str(exc)}
            )
            if mark_failed and version not in (await registry.pointers(name)).values():
                await registry.set_status(name, version, "failed", error=exc.message)
            raise
        switched = await registry.mark_serving(name, version)
        await apply_retention(registry, name)  # under the lock: no deploy lands meanwhile
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


async def cleanup_versions(
    registry: ModelRegistry,
    name: str,
    *,
    keep_recent: int = 0,
    keep_pending: bool = False,
    wait_s: float = 60.0,
) -> list[str]:
    """:meth:`ModelRegistry.cleanup` under the model's deploy lock: a cleanup that read the
    pointers just before a promote or rollback made a version serving could delete it, and
    the serving pointer would name a version that is gone. Conflict when a deploy holds the
    lock past ``wait_s``."""
    async with deploy_lock(registry, name, wait_s=wait_s):
        return await registry.cleanup(name, keep_recent=keep_recent, keep_pending=keep_pending)


async def apply_retention(registry: ModelRegistry, name: str) -> list[str]:
    """Retention after a deploy: keep serving, previous, pinned and in-flight versions.

    Called with the deploy lock held. A failure is logged, never raised: the deploy it follows
    has succeeded.
    """
    try:
        return await registry.cleanup(name, keep_pending=True)
    except (HivemindError, OSError) as exc:
        log.warning("retention after deploying %s failed: %s", name, exc)
        return []


async def rollback_model(
    *,
    registry: ModelRegistry,
    client: httpx.AsyncClient,
    name: str,
    timeout: float = SWAP_TIMEOUT_S,
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
    "apply_retention",
    "cleanup_versions",
    "deploy_in_progress",
    "deploy_lock",
    "deploy_version",
    "model_state",
    "rollback_model",
    "serve_files",
    "served_version",
    "swap_in",
]
