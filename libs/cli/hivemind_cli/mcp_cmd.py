"""``hivemind mcp``: the MCP bridge over stdio, as Claude Code spawns it."""

from __future__ import annotations

import typer


def mcp() -> None:
    """Serve the MCP tools over stdio (uses HIVEMIND_API_KEY against the gateway)."""
    typer.echo("the MCP bridge is not available yet", err=True)
    raise typer.Exit(2)
