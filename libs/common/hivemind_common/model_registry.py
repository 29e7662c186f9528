"""The model registry: every trained version of a served model, in Redis and on disk.

A version lives in ``$HIVEMIND_DATA_DIR/models/<name>/<version>/`` (the PEFT adapter, the GGUF
exports and ``manifest.json`` with the sha256 of every file) and as one JSON record in the Redis
hash ``keys.model_versions(name)``. The hash ``keys.model_serving(name)`` points at the serving
version and the one before it; the status fields of the records mirror those pointers.

No torch here: the gateway imports this module.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hivemind_common import ids, keys
from hivemind_common.errors import Conflict, Invalid, NotFound
from hivemind_common.redis import HivemindRedis

log = logging.getLogger(__name__)

VersionStatus = Literal["serving", "previous", "ready", "rejected", "failed"]
VERSION_STATUSES: tuple[str, ...] = ("serving", "previous", "ready", "rejected", "failed")
MANIFEST = "manifest.json"


def valid_name(value: str) -> bool:
    """Model names and versions are short path-safe words (the one name rule of ids)."""
    return ids.valid_name(value)


def check_name(value: str, what: str = "name") -> str:
    """Return ``value`` or raise ``Invalid`` naming the offending parameter."""
    if not valid_name(value):
        raise Invalid(f"invalid model {what}: {value!r}", param=what)
    return value


VERSION_ID = re.compile(r"v\d{8}-\d{6}-[0-9a-f]{4}")  # what new_version_id makes
ORPHAN_GRACE_S = 3600.0


def _newest_mtime(folder: Path) -> float:
    """The latest modification time of ``folder`` and anything in it."""
    newest = folder.stat().st_mtime
    for path in folder.rglob("*"):
        with contextlib.suppress(OSError):
            newest = max(newest, path.lstat().st_mtime)
    return newest


def new_version_id(now: float | None = None) -> str:
    """A sortable version id: ``v<UTC timestamp>-<4 hex>``."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now or time.time()))
    return f"v{stamp}-{os.urandom(2).hex()}"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class ModelVersion(BaseModel):
    """One registered version of a model."""

    model_config = ConfigDict(extra="allow")

    name: str
    version: str
    status: VersionStatus = "ready"
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)
    metrics: dict[str, Any] = Field(default_factory=dict)
    base: str | None = None
    parent_version: str | None = None
    dataset: dict[str, Any] = Field(default_factory=dict)
    files: dict[str, str] = Field(default_factory=dict)
    path: str = ""
    job_id: str | None = None
    error: str | None = None

    def public(self) -> dict[str, Any]:
        """The fields ``GET /v1/models/versions`` shows."""
        return {
            "name": self.name,
            "version": self.version,
            "status": self.status,
            "created_at": self.created_at,
            "metrics": self.metrics,
        }


class ModelRegistry:
    """Versions of models: register, look up, change status, switch serving, clean up."""

    def __init__(self, redis: HivemindRedis, data_dir: Path | str) -> None:
        self.redis = redis
        self.data_dir = Path(data_dir)

    # --- paths and manifests -------------------------------------------------------------------
    def model_dir(self, name: str) -> Path:
        return self.data_dir / "models" / check_name(name)

    def version_dir(self, name: str, version: str) -> Path:
        """``$DATA_DIR/models/<name>/<version>/`` (not created here)."""
        return self.model_dir(name) / check_name(version, "version")

    def read_manifest(self, name: str, version: str) -> dict[str, Any]:
        path = self.version_dir(name, version) / MANIFEST
        if not path.is_file():
            raise NotFound(f"no manifest for {name}/{version}")
        data: dict[str, Any] = json.loads(path.read_text())
        return data

    def write_manifest(self, name: str, version: str, manifest: dict[str, Any]) -> Path:
        """Write ``manifest.json`` atomically (temp file + rename)."""
        directory = self.version_dir(name, version)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / MANIFEST
        tmp = directory / f".{MANIFEST}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
        os.replace(tmp, path)
        return path

    def update_manifest(self, name: str, version: str, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into the manifest (missing manifest: start empty) and write it."""
        try:
            manifest = self.read_manifest(name, version)
        except NotFound:
            manifest = {"name": name, "version": version}
        manifest.update(fields)
        self.write_manifest(name, version, manifest)
        return manifest

    def hash_files(
        self, name: str, version: str, filenames: builtins.list[str] | None = None
    ) -> dict[str, str]:
        """sha256 of every regular file of the version directory (or of ``filenames``)."""
        directory = self.version_dir(name, version)
        if filenames is None:
            paths = sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST)
            paths = [p for p in paths if not p.name.startswith(".")]
        else:
            paths = [directory / f for f in filenames]
        return {str(p.relative_to(directory)): sha256_file(p) for p in paths}

    async def record_files(self, name: str, version: str) -> dict[str, str]:
        """Hash every file of the version, store the sums in the manifest and the record."""
        files = self.hash_files(name, version)
        self.update_manifest(name, version, files=files)
        await self._patch(name, version, files=files)
        return files

    # --- records -------------------------------------------------------------------------------
    async def register(self, mv: ModelVersion) -> ModelVersion:
        """Add (or replace) a version record; ``path`` defaults to its version directory."""
        check_name(mv.name)
        check_name(mv.version, "version")
        if mv.status in ("serving", "previous"):
            raise Invalid("a version is registered as ready/rejected/failed; deploy makes it serve")
        if not mv.path:
            mv.path = str(self.version_dir(mv.name, mv.version))
        mv.updated_at = time.time()
        await self.redis.hset(keys.model_versions(mv.name), mv.version, mv.model_dump_json())
        await self.redis.sadd(keys.models_index(), mv.name)
        log.info("registered model version", extra={"model": mv.name, "version": mv.version})
        return mv

    async def get(self, name: str, version: str) -> ModelVersion:
        check_name(name)
        check_name(version, "version")
        raw = await self.redis.hget(keys.model_versions(name), version)
        if raw is None:
            raise NotFound(f"model version {name}/{version} not found")
        return ModelVersion.model_validate_json(raw)

    async def names(self) -> builtins.list[str]:
        return sorted(await self.redis.smembers(keys.models_index()))

    async def list(self, name: str | None = None) -> builtins.list[ModelVersion]:
        """Versions of one model (or of every model), oldest first."""
        names = [check_name(name)] if name else await self.names()
        out: builtins.list[ModelVersion] = []
        for model in names:
            raw = await self.redis.hgetall(keys.model_versions(model))
            out.extend(ModelVersion.model_validate_json(v) for v in raw.values())
        return sorted(out, key=lambda mv: (mv.name, mv.created_at, mv.version))

    async def pointers(self, name: str) -> dict[str, str]:
        """``{"serving": version, "previous": version}`` (keys absent when unset)."""
        raw = await self.redis.hgetall(keys.model_serving(check_name(name)))
        return {k: v for k, v in raw.items() if v}

    async def serving(self, name: str) -> ModelVersion | None:
        version = (await self.pointers(name)).get("serving")
        return await self.get(name, version) if version else None

    async def previous(self, name: str) -> ModelVersion | None:
        version = (await self.pointers(name)).get("previous")
        return await self.get(name, version) if version else None

    async def _patch(self, name: str, version: str, **fields: Any) -> ModelVersion:
        mv = await self.get(name, version)
        data = mv.model_dump()
        data.update(fields, updated_at=time.time())
        mv = ModelVersion.model_validate(data)
        await self.redis.hset(keys.model_versions(name), version, mv.model_dump_json())
        return mv

    async def update(self, name: str, version: str, **fields: Any) -> ModelVersion:
        """Merge fields (metrics, files, error, ...) into a record; status goes via set_status."""
        if "status" in fields:
            raise Invalid("use set_status to change a version's status")
        return await self._patch(name, version, **fields)

    async def set_status(
        self, name: str, version: str, status: VersionStatus, *, error: str | None = None
    ) -> ModelVersion:
        """Set ready / rejected / failed; serving and previous only move through mark_serving."""
        if status not in ("ready", "rejected", "failed"):
            raise Invalid(f"status {status!r} is set by mark_serving or rollback")
        pointers = await self.pointers(name)
        if version in pointers.values():
            raise Conflict(f"{name}/{version} is {self._role(pointers, version)}; not changed")
        return await self._patch(name, version, status=status, error=error)

    @staticmethod
    def _role(pointers: dict[str, str], version: str) -> str:
        return "serving" if pointers.get("serving") == version else "previous"

    # --- serving switches ------------------------------------------------------------------
    async def mark_serving(self, name: str, version: str) -> dict[str, str | None]:
        """Make ``version`` serving; the old serving one becomes previous, the old previous ready.

        Idempotent: marking the serving version again changes nothing.
        """
        target = await self.get(name, version)
        pointers = await self.pointers(name)
        old_serving = pointers.get("serving")
        old_previous = pointers.get("previous")
        if old_serving == version:
            return {"serving": version, "previous": old_previous}
        now = time.time()
        updates: dict[str, ModelVersion] = {}
        if old_previous and old_previous not in (version, old_serving):
            updates[old_previous] = (await self.get(name, old_previous)).model_copy(
                update={"status": "ready", "updated_at": now}
            )
        if old_serving:
            updates[old_serving] = (await self.get(name, old_serving)).model_copy(
                update={"status": "previous", "updated_at": now}
            )
        updates[version] = target.model_copy(
            update={"status": "serving", "error": None, "updated_at": now, "served_at": now}
        )
        new_pointers = {"serving": version, "previous": old_serving or ""}
        commands: builtins.list[tuple[Any, ...]] = [
            ("HSET", keys.model_versions(name), v, mv.model_dump_json())
            for v, mv in updates.items()
        ]
        commands.append(("HSET", keys.model_serving(name), *_flatten(new_pointers)))
        await self.redis.transaction(*commands, durable=True)
        log.info(
            "model version serving",
            extra={"model": name, "version": version, "previous": old_serving},
        )
        return {"serving": version, "previous": old_serving}

    async def rollback(self, name: str) -> dict[str, str | None]:
        """Swap serving and previous in the registry (the caller swaps the inference copy first)."""
        pointers = await self.pointers(name)
        previous = pointers.get("previous")
        if not previous:
            raise Conflict(f"model {name} has no previous version to roll back to")
        return await self.mark_serving(name, previous)

    # --- cleanup -----------------------------------------------------------------------------
    async def pin(self, name: str, version: str, *, pinned: bool = True) -> ModelVersion:
        """Keep (or stop keeping) ``version`` through every cleanup."""
        return await self._patch(name, version, pinned=pinned)

    async def cleanup(
        self, name: str, *, keep_recent: int = 0, keep_pending: bool = False
    ) -> builtins.list[str]:
        """Delete the directories (and records) of versions other than serving and previous.

        Pinned versions survive, and ``keep_recent`` more of the newest. With ``keep_pending``
        (retention after a deploy), a ``ready`` version newer than the serving one survives too:
        its export or deploy may be under way. Returns the versions removed. The serving pointer
        is read again right before each deletion, so a deploy that lands meanwhile is never
        deleted.
        """
        versions = await self.list(name)
        newest = (
            {mv.version for mv in versions[len(versions) - keep_recent :]} if keep_recent else set()
        )
        removed: builtins.list[str] = []
        for mv in versions:
            pointers = await self.pointers(name)
            protected = set(pointers.values()) | newest
            if mv.version in protected or mv.status in ("serving", "previous"):
                continue
            if (mv.model_extra or {}).get("pinned"):
                continue
            if keep_pending and mv.status == "ready" and self._newer_than_serving(mv, versions):
                continue
            directory = self.version_dir(name, mv.version)
            await self.redis.hdel(keys.model_versions(name), mv.version)
            if directory.is_dir():
                shutil.rmtree(directory)
            removed.append(mv.version)
        removed += await self._sweep_orphans(name)
        if removed:
            log.info("cleaned model versions", extra={"model": name, "removed": removed})
        return removed

    async def _sweep_orphans(self, name: str) -> builtins.list[str]:
        """Delete version folders no record names, untouched for ``ORPHAN_GRACE_S``: a trainer
        killed between saving a version and registering it left one behind, and nothing ever
        removed it. A folder written in the last hour may be a save under way; other folders
        of the model (the base cache) do not look like versions and stay."""
        root = self.model_dir(name)
        if not root.is_dir():
            return []
        recorded = {
            v.decode() if isinstance(v, bytes) else str(v)
            for v in await self.redis.hkeys(keys.model_versions(name))
        }
        cutoff = time.time() - ORPHAN_GRACE_S
        swept: builtins.list[str] = []
        for folder in sorted(root.iterdir()):
            if not folder.is_dir() or folder.is_symlink() or folder.name in recorded:
                continue
            if not VERSION_ID.fullmatch(folder.name) or _newest_mtime(folder) > cutoff:
                continue
            if await self.redis.hexists(keys.model_versions(name), folder.name):
                continue  # registered meanwhile
            shutil.rmtree(folder, ignore_errors=True)
            swept.append(folder.name)
        return swept

    @staticmethod
    def _newer_than_serving(mv: ModelVersion, versions: builtins.list[ModelVersion]) -> bool:
        serving = [v for v in versions if v.status == "serving"]
        return not serving or mv.created_at > serving[0].created_at


def _flatten(mapping: dict[str, str]) -> builtins.list[str]:
    out: builtins.list[str] = []
    for key, value in mapping.items():
        out.extend((key, value))
    return out


__all__ = [
    "MANIFEST",
    "VERSION_STATUSES",
    "ModelRegistry",
    "ModelVersion",
    "VersionStatus",
    "check_name",
    "new_version_id",
    "sha256_file",
    "valid_name",
]
