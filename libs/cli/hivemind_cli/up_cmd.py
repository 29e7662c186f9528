"""``hivemind up`` and ``hivemind status``."""

from __future__ import annotations

import typer


def up() -> None:
    """Start an embedded Redis and all six services (work in progress)."""
    typer.echo("not yet", err=True)
    raise typer.Exit(2)


def status() -> None:
    """Health of every service in the registry."""
    raise typer.Exit(2)
