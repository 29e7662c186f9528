"""``hivemind models list|promote|rollback`` and ``hivemind export <version>``."""

from __future__ import annotations

import typer

app = typer.Typer(help="Model versions: list, promote, roll back.", no_args_is_help=True)


def export(version: str = typer.Argument(..., help="The version to export to GGUF.")) -> None:
    """Export a trained version to GGUF (adapter, f16 and quantized)."""
    typer.echo("export is not available yet", err=True)
    raise typer.Exit(2)
