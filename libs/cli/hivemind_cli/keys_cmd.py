"""``hivemind keys create|list|revoke``: API keys in Redis."""

from __future__ import annotations

import datetime as dt

import typer
from rich.console import Console
from rich.table import Table

from hivemind_cli.redis_cli import run_with_redis
from hivemind_common.audit import cli_audited, key_tenant
from hivemind_common.auth import ROLES, ApiKeyStore
from hivemind_common.redis import HivemindRedis

app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)


def _run(action):  # type: ignore[no-untyped-def]
    return run_with_redis(lambda redis: action(ApiKeyStore(redis)))


@app.command("create")
def create(
    tenant: str = typer.Option(..., help="The tenant (namespace) the key acts for."),
    role: str = typer.Option("write", help=f"One of: {', '.join(ROLES)}."),
    name: str = typer.Option("", help="A label to recognise the key by."),
    rpm: int = typer.Option(
        None, help="Requests per minute for this key (default: the gateway's)."
    ),
) -> None:
    """Create a key and print it (shown once; only its hash is stored)."""

    async def action(redis: HivemindRedis) -> tuple[str, str]:
        async with cli_audited(redis, "keys.create", tenant=tenant) as entry:
            entry.detail = f"role={role}"
            made = await ApiKeyStore(redis).create(
                tenant=tenant,
                role=role,  # type: ignore[arg-type]
                name=name,
                rpm=rpm,
            )
            entry.target = made[0]
            return made

    key_id, plaintext = run_with_redis(action)
    typer.echo(plaintext)
    typer.echo(f"key id {key_id}: tenant {tenant}, role {role}", err=True)


@app.command("list")
def list_keys(tenant: str = typer.Option(None, help="Only this tenant's keys.")) -> None:
    """List keys (ids, tenants, roles; never the keys themselves)."""
    rows = _run(lambda s: s.list(tenant=tenant))
    table = Table("key id", "tenant", "role", "name", "rpm", "created", "revoked")
    for k in rows:
        created = dt.datetime.fromtimestamp(k.created_at, dt.UTC).strftime("%Y-%m-%d %H:%M")
        rpm = str(k.rpm) if k.rpm else "default"
        revoked = "yes" if k.revoked else ""
        table.add_row(k.key_id, k.tenant, k.role, k.name, rpm, created, revoked)
    Console().print(table)


@app.command("revoke")
def revoke(key_id: str = typer.Argument(..., help="The key id shown by `keys list`.")) -> None:
    """Revoke a key; requests with it get 401 from now on."""

    async def action(redis: HivemindRedis) -> None:
        tenant = await key_tenant(redis, key_id)
        async with cli_audited(redis, "keys.revoke", tenant=tenant, target=key_id):
            await ApiKeyStore(redis).revoke(key_id)

    run_with_redis(action)
    typer.echo(f"revoked {key_id}")
