"""Write a backup folder and restore one; see the package docstring for the layout."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hivemind_cli.backup.redis_dump import dump_keys, is_empty, restore_keys
from hivemind_common import keys
from hivemind_common.errors import Conflict, Invalid
from hivemind_common.model_registry import sha256_file
from hivemind_common.redis import HivemindRedis, connect_redis

FORMAT = 1
PREFIX = "hivemind-backup-"
MANIFEST = "manifest.json"
REDIS_FILE = "redis.jsonl"
FILES = "files"
# Under $HIVEMIND_DATA_DIR, copied whole when present (models are chosen version by version).
WHOLE_DIRS = ("datasets", "calibration")
SECRETS_DIR = "secrets"
REDIS_DEADLINE_S = 10.0


@dataclass
class BackupResult:
    path: Path
    keys: int
    files: int
    models: dict[str, dict[str, str]] = field(default_factory=dict)
    removed: list[Path] = field(default_factory=list)


def _redis(url: str) -> Any:
    return connect_redis(url, decode_responses=False, retry_deadline=REDIS_DEADLINE_S)


async def _serving_versions(redis: HivemindRedis) -> dict[str, dict[str, str]]:
    """``{model: {"serving": v, "previous": v}}`` from the registry (whichever are set)."""
    out: dict[str, dict[str, str]] = {}
    for raw in await redis.smembers(keys.models_index()):
        name = raw.decode()
        pointers = await redis.hgetall(keys.model_serving(name))
        out[name] = {k.decode(): v.decode() for k, v in pointers.items() if v}
    return out


def _copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, symlinks=False, dirs_exist_ok=True)


def _sums(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


async def write_snapshot(
    *, redis_url: str, data_dir: Path, to: Path, with_secrets: bool = False, keep: int = 0
) -> BackupResult:
    """A new backup folder under ``to``; with ``keep`` > 0 only the newest ``keep`` stay."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    final = to / f"{PREFIX}{stamp}"
    if final.exists():
        raise Conflict(f"{final} exists already; wait a second and run again")
    partial = to / f".{PREFIX}{stamp}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    # every tenant's facts, memories and chats go in here: only the owner may read it, from the
    # first byte written (a manual run does not have the timer's UMask=0077)
    partial.mkdir(mode=0o700, parents=True)
    partial.chmod(0o700)
    (partial / FILES).mkdir(mode=0o700)
    redis = _redis(redis_url)
    try:
        models = await _serving_versions(redis)
        with (partial / REDIS_FILE).open("w") as out:
            count = await dump_keys(redis, out)
        topology = redis.topology
    finally:
        await redis.aclose()
    files = partial / FILES
    for name, pointers in models.items():
        for version in sorted(set(pointers.values())):
            src = data_dir / "models" / name / version
            if src.is_dir():
                _copy_tree(src, files / "models" / name / version)
    for sub in (*WHOLE_DIRS, *((SECRETS_DIR,) if with_secrets else ())):
        if (data_dir / sub).is_dir():
            _copy_tree(data_dir / sub, files / sub)
    sums = _sums(partial)
    manifest = {
        "format": FORMAT,
        "created_at": time.time(),
        "redis": {"topology": topology, "keys": count},
        "models": models,
        "with_secrets": with_secrets,
        "sha256": sums,
    }
    (partial / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    partial.rename(final)
    removed = prune(to, keep) if keep > 0 else []
    return BackupResult(final, count, len(sums) - 1, models, removed)


def prune(to: Path, keep: int) -> list[Path]:
    """Remove all but the newest ``keep`` backups under ``to`` (and any left half-written)."""
    done = sorted(p for p in to.glob(f"{PREFIX}*") if (p / MANIFEST).is_file())
    old = done[:-keep] if keep else done
    for path in old:
        shutil.rmtree(path)
    return old


def verify(backup: Path) -> dict[str, Any]:
    """The manifest, after checking every file's sha256 (and that nothing is missing)."""
    path = backup / MANIFEST
    if not path.is_file():
        raise Invalid(f"{backup} is not a backup: no {MANIFEST}")
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
    except (ValueError, OSError) as exc:
        raise Invalid(f"{backup}: {MANIFEST} cannot be read: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise Invalid(f"{backup}: backup format {found!r}, expected {FORMAT}")
    want = manifest.get("sha256")
    if not isinstance(want, dict):
        raise Invalid(f"{backup}: {MANIFEST} lists no sha256 sums")
    have = _sums(backup)
    bad = sorted(rel for rel in set(want) | set(have) if want.get(rel) != have.get(rel))
    if bad:
        shown = ", ".join(bad[:5]) + (" ..." if len(bad) > 5 else "")
        raise Invalid(f"{backup}: {len(bad)} file(s) missing, extra or changed: {shown}")
    return manifest


async def restore_snapshot(
    backup: Path, *, redis_url: str, data_dir: Path, force: bool = False
) -> dict[str, Any]:
    """Check the sums, then load Redis (empty unless ``force``) and copy the files back."""
    manifest = verify(backup)
    redis = _redis(redis_url)
    try:
        if not force and not await is_empty(redis):
            raise Conflict("this Redis holds keys already: restore into a fresh one, or --force")
        restored = await restore_keys(redis, backup / REDIS_FILE, replace=force)
        # the restored data may predate a one-time key migration that this Redis (restored into
        # with --force) or the backup marks as done: each runs again at the gateway's next
        # start (they are idempotent), so older data is moved too
        async for key in redis.scan_iter(match=keys.MIGRATIONS_DONE_MATCH, count=1000):
            await redis.delete(key)
    finally:
        await redis.aclose()
    _restore_files(backup / FILES, data_dir)
    return {"keys": restored, "models": manifest["models"], "path": str(backup)}


def _restore_files(files: Path, data_dir: Path) -> None:
    if not files.is_dir():
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    _copy_tree(files, data_dir)
    if (files / SECRETS_DIR).is_dir():
        (data_dir / SECRETS_DIR).chmod(0o700)
        for secret in (data_dir / SECRETS_DIR).iterdir():
            secret.chmod(0o600)
