"""``hivemind audit``: the trail of admin and operator actions, read straight from Redis."""

from __future__ import annotations

import datetime as dt
import json
import re

import typer
from rich.console import Console
from rich.table import Table

from hivemind_cli.redis_cli import run_with_redis
from hivemind_common import audit

_AGO = re.compile(r"^(\d+)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(value: str | None) -> float | None:
    """``30m``/``12h``/``7d`` ago, an ISO date or time (UTC when no zone), or a Unix time."""
    if value is None:
        return None
    if m := _AGO.match(value):
        return dt.datetime.now(dt.UTC).timestamp() - int(m[1]) * _UNIT_S[m[2]]
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r}: use 12h, 7d, an ISO date or a Unix time") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def show(
    action: str = typer.Option(None, help="An action (keys.create) or a family (keys.)."),
    tenant: str = typer.Option(None, help="Only this tenant's entries."),
    since: str = typer.Option(None, help="From: 12h, 7d, 2026-01-31 or a Unix time."),
    limit: int = typer.Option(50, min=1, max=1000, help="Entries on this page."),
    before: str = typer.Option(None, help="The cursor the previous page printed."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines."),
) -> None:
    """Who changed what, when, from where, and the outcome (newest first)."""
    start = parse_since(since)
    entries, cursor = run_with_redis(
        lambda redis: audit.read(
            redis, tenant=tenant, action=action, since=start, before=before, limit=limit
        )
    )
    if as_json:
        for entry in entries:
            typer.echo(json.dumps(entry.public()))
    else:
        table = Table("when (UTC)", "action", "outcome", "who", "tenant", "target", "from")
        for e in entries:
            when = dt.datetime.fromtimestamp(e.ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
            table.add_row(when, e.action, e.outcome, e.key_id, e.tenant, e.target, e.source)
        Console().print(table)
    if cursor:
        typer.echo(f"more: --before {cursor}", err=True)
