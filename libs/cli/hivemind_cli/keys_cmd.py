"""``hivemind keys create|list|revoke``: API keys in Redis."""

from __future__ import annotations

import asyncio
import datetime as dt

import typer
from rich.console import Console
from rich.table import Table

from hivemind_common.auth import ROLES, ApiKeyStore
from hivemind_common.errors import HivemindError
from hivemind_common.redis_client import connect_redis
from hivemind_common.settings import CommonSettings

app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)


async def _with_store(action):  # type: ignore[no-untyped-def]
    settings = CommonSettings()
    redis = connect_redis(settings.redis_url)
    try:
        return await action(ApiKeyStore(redis))
    finally:
        await redis.aclose()


def _run(action):  # type: ignore[no-untyped-def]
    try:
        return asyncio.run(_with_store(action))
    except HivemindError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from exc
    except OSError as exc:
        typer.echo(f"error: cannot reach Redis: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.command("create")
def create(
    tenant: str = typer.Option(..., help="The tenant (namespace) the key acts for."),
    role: str = typer.Option("write", help=f"One of: {', '.join(ROLES)}."),
    name: str = typer.Option("", help="A label to recognise the key by."),
) -> None:
    """Create a key and print it (shown once; only its hash is stored)."""
    key_id, plaintext = _run(lambda s: s.create(tenant=tenant, role=role, name=name))  # type: ignore[arg-type]
    typer.echo(plaintext)
    typer.echo(f"key id {key_id}: tenant {tenant}, role {role}", err=True)


@app.command("list")
def list_keys(tenant: str = typer.Option(None, help="Only this tenant's keys.")) -> None:
    """List keys (ids, tenants, roles; never the keys themselves)."""
    rows = _run(lambda s: s.list(tenant=tenant))
    table = Table("key id", "tenant", "role", "name", "created", "revoked")
    for k in rows:
        created = dt.datetime.fromtimestamp(k.created_at, dt.UTC).strftime("%Y-%m-%d %H:%M")
        table.add_row(k.key_id, k.tenant, k.role, k.name, created, "yes" if k.revoked else "")
    Console().print(table)


@app.command("revoke")
def revoke(key_id: str = typer.Argument(..., help="The key id shown by `keys list`.")) -> None:
    """Revoke a key; requests with it get 401 from now on."""
    _run(lambda s: s.revoke(key_id))
    typer.echo(f"revoked {key_id}")
