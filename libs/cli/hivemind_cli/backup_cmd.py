"""``hivemind backup [--to DIR]`` and ``hivemind restore DIR``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import typer

from hivemind_cli.backup import restore_snapshot, write_snapshot
from hivemind_cli.redis_cli import exit_on_failure
from hivemind_common.settings import CommonSettings


def backup(
    to: Path = typer.Option(None, help="Where backups go (default: $HIVEMIND_DATA_DIR/backups)."),
    with_secrets: bool = typer.Option(
        False, "--with-secrets", help="Include $HIVEMIND_DATA_DIR/secrets (keep it safe)."
    ),
    keep: int = typer.Option(0, min=0, help="Keep only the newest N backups in --to (0: all)."),
) -> None:
    """Snapshot Redis (every primary), the serving and previous models, datasets: one folder
    with a manifest of sha256 sums."""
    settings = CommonSettings()
    target = to or settings.data_dir / "backups"
    target.mkdir(parents=True, exist_ok=True)
    with exit_on_failure(settings.redis_url):
        result = asyncio.run(
            write_snapshot(
                redis_url=settings.redis_url,
                data_dir=settings.data_dir,
                to=target,
                with_secrets=with_secrets,
                keep=keep,
            )
        )
    typer.echo(str(result.path))
    summary = {
        "keys": result.keys,
        "files": result.files,
        "models": result.models,
        "removed": [str(p) for p in result.removed],
    }
    typer.echo(json.dumps(summary), err=True)


def restore(
    path: Path = typer.Argument(..., help="A backup folder (hivemind-backup-...)."),
    force: bool = typer.Option(
        False, "--force", help="Restore into a Redis that holds keys (overwrites them)."
    ),
) -> None:
    """Bring a fresh installation back to a backup: sums checked first, then Redis and files."""
    settings = CommonSettings()
    with exit_on_failure(settings.redis_url):
        done = asyncio.run(
            restore_snapshot(
                path, redis_url=settings.redis_url, data_dir=settings.data_dir, force=force
            )
        )
    typer.echo(json.dumps(done))
