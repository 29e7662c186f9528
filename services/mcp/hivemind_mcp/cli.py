"""``hivemind mcp``: the MCP bridge over stdio, as Claude Code spawns it.

The bridge's command: it reaches the ``hivemind`` command through the ``hivemind.commands``
entry point ``mcp`` (one command, this module's ``mcp``); only the CLI imports this module.

stdout carries the MCP protocol, so everything else (logs, warnings) goes to stderr. The key
used against the gateway comes from ``HIVEMIND_API_KEY``; the gateway is found through
``HIVEMIND_GATEWAY_URL`` or the hosts registry.
"""

from __future__ import annotations

import logging

import anyio
import typer

from hivemind_common.hosts import RegistryError
from hivemind_common.observability import configure_logging

log = logging.getLogger(__name__)


def mcp(
    gateway_url: str = typer.Option(
        None,
        "--gateway-url",
        envvar="HIVEMIND_GATEWAY_URL",
        help="The gateway's base URL (default: the hosts registry).",
        show_envvar=True,
    ),
) -> None:
    """Serve the MCP tools over stdio (uses HIVEMIND_API_KEY against the gateway)."""
    from hivemind_mcp.server import build_server, gateway_base_url  # ~3 s: only when it runs
    from hivemind_mcp.settings import McpSettings

    overrides = {"gateway_url": gateway_url} if gateway_url else {}
    settings = McpSettings(**overrides)
    configure_logging(settings.log_level, json_lines=settings.log_json)  # stderr only
    try:
        base = gateway_base_url(settings)
    except RegistryError as exc:
        typer.echo(f"error: cannot find the gateway: {exc}; set HIVEMIND_GATEWAY_URL", err=True)
        raise typer.Exit(2) from exc
    if settings.api_key is None:
        log.warning("HIVEMIND_API_KEY is not set: every tool will answer with an error")
    log.info("MCP bridge on stdio, gateway %s", base)
    server = build_server(settings.model_copy(update={"gateway_url": base}))
    anyio.run(server.run_stdio_async)
