"""``hivemind tenants set|show``: a tenant's training consent, quotas and request rate."""

from __future__ import annotations

import json

import typer

from hivemind_cli.redis_cli import run_with_redis
from hivemind_common.audit import cli_audited
from hivemind_common.redis import HivemindRedis
from hivemind_common.tenants import TenantPolicy, get_policy, set_policy

app = typer.Typer(help="Quotas, request rate and training consent.", no_args_is_help=True)

MIB = 1024 * 1024


@app.command("set")
def set_tenant(
    tenant: str = typer.Argument(..., help="The tenant (namespace)."),
    max_facts: int = typer.Option(None, help="Most facts the tenant may keep (0: no limit)."),
    max_memories: int = typer.Option(None, help="Most memories it may keep (0: no limit)."),
    max_sessions: int = typer.Option(None, help="Most live sessions it may keep (0: no limit)."),
    max_docs: int = typer.Option(None, help="Most reference library documents (0: no limit)."),
    max_cache_mb: int = typer.Option(None, help="Most tool-cache MiB it may keep (0: no limit)."),
    rpm: int = typer.Option(None, help="Requests a minute for all its keys (0: no limit)."),
    share_training: bool = typer.Option(
        None,
        "--share-training/--no-share-training",
        help="Whether its chats and samples may train the shared model.",
    ),
) -> None:
    """Change a tenant's settings; what is not given stays as it is."""
    cache_bytes = None if max_cache_mb is None else max_cache_mb * MIB
    changes = {
        "share_training": share_training,
        "max_facts": max_facts,
        "max_memories": max_memories,
        "max_sessions": max_sessions,
        "max_docs": max_docs,
        "max_cache_bytes": cache_bytes,
        "rpm": rpm,
    }

    async def action(redis: HivemindRedis) -> TenantPolicy:
        async with cli_audited(redis, "tenants.set", tenant=tenant, target=tenant) as entry:
            entry.detail = " ".join(f"{k}={v}" for k, v in changes.items() if v is not None)
            return await set_policy(redis, tenant, **changes)  # type: ignore[arg-type]

    policy = run_with_redis(action)
    typer.echo(json.dumps(policy.as_dict()))


@app.command("show")
def show_tenant(tenant: str = typer.Argument(..., help="The tenant (namespace).")) -> None:
    """A tenant's settings as JSON (absent limits are null: no limit)."""
    policy = run_with_redis(lambda redis: get_policy(redis, tenant))
    typer.echo(json.dumps(policy.as_dict(), indent=2))
