"""``hivemind``: one Typer app; each command group lives in its own module.

The groups here need only ``hivemind_common``. A command that belongs to one service lives in
that service's package and joins through the ``hivemind.commands`` entry points (the service's
``pyproject.toml`` names a Typer app, which becomes a group, or a function, which becomes one
command); this package imports no service.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import typer

from hivemind_cli import (
    audit_cmd,
    backup_cmd,
    hosts_cmd,
    ingest_cmd,
    keys_cmd,
    memories_cmd,
    tenants_cmd,
    up_cmd,
)

app = typer.Typer(
    name="hivemind",
    help="Hive-Mind: memory, inference and continuous learning for coding assistants.",
    no_args_is_help=True,
    add_completion=False,
)
app.command("up")(up_cmd.up)
app.command("status")(up_cmd.status)
app.add_typer(keys_cmd.app, name="keys")
app.add_typer(hosts_cmd.app, name="hosts")
app.add_typer(tenants_cmd.app, name="tenants")
app.add_typer(memories_cmd.app, name="memories")
app.command("ingest")(ingest_cmd.ingest)
app.command("audit")(audit_cmd.show)
app.command("backup")(backup_cmd.backup)
app.command("restore")(backup_cmd.restore)


def _add_service_commands() -> None:
    """Command groups that live in a service's package (entry points ``hivemind.commands``);
    a service that is not installed here simply has no commands."""
    for entry in entry_points(group="hivemind.commands"):
        try:
            loaded = entry.load()
        except ImportError:
            continue
        if isinstance(loaded, typer.Typer):
            app.add_typer(loaded, name=entry.name)
        else:
            app.command(entry.name)(loaded)


_add_service_commands()


def run() -> None:
    """The ``hivemind`` command. Settings that cannot be read (a bad ``HIVEMIND_*`` value, an
    unreadable or non-UTF-8 secret file) are one line on stderr and exit 2, not a traceback."""
    from pydantic import ValidationError

    try:
        app()
    except ValidationError as exc:
        for error in exc.errors()[:5]:
            where = ".".join(str(p) for p in error.get("loc", ())) or exc.title
            typer.echo(f"error: {where}: {error.get('msg', 'invalid')}", err=True)
        raise SystemExit(2) from None
    except (UnicodeDecodeError, PermissionError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
