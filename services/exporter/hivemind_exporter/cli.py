"""``hivemind models list|promote|rollback|pin|cleanup`` and ``hivemind export <version>``.

The exporter's commands: they reach the ``hivemind`` command through the ``hivemind.commands``
entry points ``models`` (this module's ``app``) and ``export`` (its ``export``); only the CLI
imports this module. They work straight against Redis, the data directory and the inference
service (internal token), so they run on a node of the suite without an API key. Torch is
imported by ``export`` when it runs, never by ``hivemind --help``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import typer
from rich.console import Console
from rich.table import Table

from hivemind_cli.redis_cli import cli_redis, exit_on_failure
from hivemind_cli.show import when
from hivemind_common.audit import cli_audited
from hivemind_common.internal_http import internal_client
from hivemind_common.model_deploy import (
    SWAP_TIMEOUT_S,
    cleanup_versions,
    deploy_version,
    rollback_model,
)
from hivemind_common.model_registry import ModelRegistry
from hivemind_common.settings import ServiceSettings

app = typer.Typer(help="Model versions: list, promote, roll back.", no_args_is_help=True)
T = TypeVar("T")

ModelOpt = typer.Option("default", "--model", "-m", help="The served model's name.")


async def _with_registry(action: Callable[[ModelRegistry], Awaitable[T]]) -> T:
    settings = ServiceSettings()
    redis = cli_redis(settings.redis_url)
    try:
        return await action(ModelRegistry(redis, settings.data_dir))
    finally:
        await redis.aclose()


async def _with_inference(action: Callable[[ModelRegistry, httpx.AsyncClient], Awaitable[T]]) -> T:
    settings = ServiceSettings(service_name="cli")
    token = settings.require_internal_token()
    timeout = httpx.Timeout(SWAP_TIMEOUT_S, connect=3.0)
    async with internal_client(
        "inference", token=token, timeout=timeout, profile=settings.profile
    ) as client:
        return await _with_registry(lambda reg: action(reg, client))


async def _audited(
    reg: ModelRegistry, action: str, target: str, work: Callable[[], Awaitable[T]]
) -> T:
    async with cli_audited(reg.redis, action, target=target):
        return await work()


def _run(coro: Awaitable[T]) -> T:
    with exit_on_failure(ServiceSettings().redis_url):
        try:
            return asyncio.run(coro)  # type: ignore[arg-type]
        except (OSError, RuntimeError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc


def _metric_text(metrics: dict[str, Any]) -> str:
    shown = [f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, int | float)]
    return " ".join(shown[:4])


@app.command("list")
def list_versions(
    model: str = typer.Option(None, "--model", "-m", help="Only this model."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List trained versions with their status and metrics."""
    versions = _run(_with_registry(lambda reg: reg.list(model)))
    if as_json:
        typer.echo(json.dumps({"data": [mv.public() for mv in versions]}, indent=2))
        return
    table = Table("model", "version", "status", "created", "metrics")
    for mv in versions:
        created = when(mv.created_at)
        table.add_row(mv.name, mv.version, mv.status, created, _metric_text(mv.metrics))
    Console().print(table)


@app.command("promote")
def promote(
    version: str = typer.Argument(..., help="The version to serve."),
    model: str = ModelOpt,
) -> None:
    """Hot-swap a version in; the serving one becomes previous."""
    result = _run(
        _with_inference(
            lambda reg, client: _audited(
                reg,
                "models.promote",
                f"{model}@{version}",
                lambda: deploy_version(
                    registry=reg,
                    client=client,
                    name=model,
                    version=version,
                    timeout=SWAP_TIMEOUT_S,
                ),
            )
        )
    )
    typer.echo(json.dumps(result.public()))


@app.command("rollback")
def rollback(model: str = ModelOpt) -> None:
    """Serve the previous version again."""
    result = _run(
        _with_inference(
            lambda reg, client: _audited(
                reg,
                "models.rollback",
                model,
                lambda: rollback_model(
                    registry=reg, client=client, name=model, timeout=SWAP_TIMEOUT_S
                ),
            )
        )
    )
    typer.echo(json.dumps(result.public()))


@app.command("pin")
def pin(
    version: str = typer.Argument(..., help="The version to keep through every cleanup."),
    model: str = ModelOpt,
    unpin: bool = typer.Option(False, "--unpin", help="Let cleanup delete it again."),
) -> None:
    """Keep a version through retention and cleanup (or, with --unpin, stop keeping it)."""
    action = "models.unpin" if unpin else "models.pin"
    mv = _run(
        _with_registry(
            lambda reg: _audited(
                reg, action, f"{model}:{version}", lambda: reg.pin(model, version, pinned=not unpin)
            )
        )
    )
    typer.echo(json.dumps({"version": mv.version, "pinned": not unpin}))


@app.command("cleanup")
def cleanup(
    model: str = ModelOpt,
    keep_recent: int = typer.Option(2, min=0, help="Newest versions kept besides the served."),
) -> None:
    """Delete old versions; the serving one and the one before it are always kept."""
    removed = _run(
        _with_registry(
            lambda reg: _audited(
                reg,
                "models.cleanup",
                model,
                lambda: cleanup_versions(reg, model, keep_recent=keep_recent),
            )
        )
    )
    typer.echo(json.dumps({"removed": removed}))


def export(
    version: str = typer.Argument(..., help="The version to export to GGUF."),
    model: str = ModelOpt,
    quant: str = typer.Option(None, help="Q8_0, Q5_K_M, ... (default: by base)."),
    deploy: bool = typer.Option(False, "--deploy/--no-deploy", help="Hot-swap it in after."),
    chat_check: bool = typer.Option(True, "--chat-check/--no-chat-check"),
    merged: bool = typer.Option(
        False, "--merged", help="Also write the merged f16 and quantized files."
    ),
) -> None:
    """Export a trained version to GGUF and validate it.

    Writes what serving needs: ``adapter.gguf`` when the base is served as it is, the merged f16
    and quantized files when they are served, or with ``--merged`` / ``--quant``.
    """
    from hivemind_exporter.recipe import ExportConfig, run_export

    async def go(reg: ModelRegistry, client: httpx.AsyncClient | None) -> dict[str, Any]:
        await reg.get(model, version)
        config = ExportConfig(
            name=model,
            version=version,
            quant=quant,
            require_chat_stop=chat_check,
            write_merged=merged or quant is not None,
        )
        result = await asyncio.to_thread(run_export, config, reg)
        await reg.record_files(model, version)
        await reg.update(model, version, export=result.timings)
        out: dict[str, Any] = {
            "version": version,
            "quant": result.quant,
            "timings_s": result.timings,
            "validation": result.validation,
            "serve": result.serve,
        }
        if client is not None:
            deployed = await deploy_version(
                registry=reg, client=client, name=model, version=version, timeout=SWAP_TIMEOUT_S
            )
            out["deploy"] = deployed.public()
        return out

    if deploy:
        summary = _run(_with_inference(go))
    else:
        summary = _run(_with_registry(lambda reg: go(reg, None)))
    typer.echo(json.dumps(summary, indent=2))
