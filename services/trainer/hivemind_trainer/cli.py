"""``hivemind learn status|collect|train-now|daemon`` (the learning loop).

The trainer's commands: they reach the ``hivemind`` command through the ``hivemind.commands``
entry point ``learn`` (the CLI discovers it; only the CLI imports this module). ``status`` reads
Redis only; the other three run the trainer's code in this process with the same settings as the
service (``HIVEMIND_*``); ``train-now`` takes the leader lease first, so it never races a running
trainer. Torch is imported by the command that needs it, never by ``hivemind --help``.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hivemind_cli.redis_cli import run_with_redis
from hivemind_cli.show import when
from hivemind_common.audit import cli_audited
from hivemind_common.errors import HivemindError
from hivemind_common.job_records import learning_status
from hivemind_common.redis import HivemindRedis
from hivemind_trainer.estimate_cli import estimate_command
from hivemind_trainer.import_cli import import_command
from hivemind_trainer.settings import TrainerSettings

app = typer.Typer(help="The learning loop: collect, train, evaluate, deploy.", no_args_is_help=True)
T = TypeVar("T")


def _run(action: Callable[[HivemindRedis], Awaitable[T]], redis_url: str | None = None) -> T:
    return run_with_redis(action, redis_url)


def _trainer_settings(**overrides: Any) -> TrainerSettings:
    """The settings with the command's options; an invalid value (an option or a HIVEMIND_*
    variable) is an error message and exit 2, not a traceback."""
    from pydantic import ValidationError

    try:
        return TrainerSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(p) for p in error.get("loc", ())) or "settings"
            typer.echo(f"error: {where}: {error.get('msg', 'invalid')}", err=True)
        raise typer.Exit(2) from None


@app.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Samples accepted and rejected, the orchestrator's state, the latest jobs and versions
    (with their gate, task-eval and preference figures)."""
    from hivemind_trainer.eval.figures import cell, recent_version_figures

    model = _trainer_settings().model_name

    async def action(redis: HivemindRedis) -> dict[str, Any]:
        data = await learning_status(redis)
        data["versions"] = await recent_version_figures(redis, model)
        return data

    data = _run(action)
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    s, o = data["samples"], data["orchestrator"]
    console = Console()
    console.print(
        f"[bold]model[/] {data['model']}  [bold]leader[/] {o['leader'] or 'none'}  "
        f"[bold]mode[/] {o['mode']}"
    )
    console.print(
        f"samples: {s['accepted_total']} accepted, {s['rejected_total']} rejected "
        f"{s['rejected_by_reason'] or ''}, {s['secrets_scrubbed']} secrets scrubbed, "
        f"{s['unread']} unread"
    )
    console.print(
        f"next cycle: {s['new_since_last_train']} of {o['threshold']} new samples; last attempt "
        f"{when(o['last_attempt_at'])} ({o['last_result'] or '-'}), failures {o['failures']}"
    )
    if o.get("waiting"):
        console.print(f"[bold]waiting[/]: {o['waiting']}")
    table = Table("job", "status", "stage", "version", "error")
    for job in data["jobs"]:
        table.add_row(
            job["job_id"],
            job["status"],
            job["stage"],
            job.get("version", ""),
            (job.get("error") or "")[:60],
        )
    console.print(table)
    if data["versions"]:
        shown = (
            "task_f1",
            "served_task_f1",
            "task_style",
            "llama_general_loss",
            "preference_accuracy",
            "served_preference_accuracy",
        )
        versions = Table("version", "status", *shown, title="versions (task eval on served files)")
        for row in data["versions"]:
            versions.add_row(row["version"], row["status"], *(cell(row.get(k)) for k in shown))
        console.print(versions)
    letters = data.get("dead_letters") or []
    if letters:
        dead = Table("dead letter", "kind", "starts", "stage", "reason", title="given up on")
        for letter in letters:
            dead.add_row(
                letter["job_id"],
                letter["kind"],
                str(letter["attempts"]),
                letter.get("stage") or "",
                letter["reason"][:80],
            )
        console.print(dead)


@app.command("collect")
def collect() -> None:
    """Read the learning stream now: filter, scrub and store accepted samples."""
    settings = _trainer_settings()

    async def action(redis: HivemindRedis) -> dict[str, Any]:
        from hivemind_trainer.cycle import make_collector

        stats = await make_collector(redis, settings, "cli").drain()
        return stats.as_dict()

    typer.echo(json.dumps(_run(action, settings.redis_url)))


@app.command("train-now")
def train_now(
    mode: str = typer.Option(None, help="fast, balanced or best."),
    max_steps: int = typer.Option(None, help="Stop after this many optimizer steps."),
    set_: list[str] = typer.Option([], "--set", help="Recipe override key=value (repeatable)."),
    foundation: bool = typer.Option(
        False,
        "--foundation",
        help="Train on the imported data (learn import) from the base: the adapter later "
        "cycles continue from.",
    ),
) -> None:
    """Run one learning cycle here, now, with a progress bar (takes the leader lease)."""
    settings = _trainer_settings(mode=mode, max_steps=max_steps)
    overrides = dict(item.split("=", 1) for item in set_ if "=" in item)
    console = Console()

    async def action(redis: HivemindRedis) -> Any:
        from hivemind_trainer.cycle import run_cycle
        from hivemind_trainer.orchestrator import LeaderLock

        lock = LeaderLock(redis, f"cli-{id(settings)}")
        if not await lock.acquire():
            holder = await lock.holder()
            raise HivemindError(f"another trainer ({holder}) leads; use POST /v1/learning/train")
        renewer = asyncio.create_task(lock.keep_renewed())
        columns = (
            TextColumn("[bold]training"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeElapsedColumn(),
        )
        try:
            with Progress(*columns, console=console) as bar:
                task = bar.add_task("train", total=None, loss="-")

                def progress(step: int, total: int, loss: float | None) -> None:
                    if loss is None:
                        bar.update(task, completed=step, total=total)
                    else:
                        bar.update(task, completed=step, total=total, loss=f"{loss:.4f}")

                async with cli_audited(redis, "learning.train") as entry:
                    result = await run_cycle(
                        redis,
                        settings,
                        overrides=overrides,
                        progress=progress,
                        requested_by="cli",
                        reason="foundation" if foundation else "manual",
                        foundation=foundation,
                        lease=lock,
                    )
                    entry.target = result.version or result.job_id
                    entry.detail = f"status={result.status}"
                    if result.status == "failed":
                        entry.outcome = "failed"
                return result
        finally:
            renewer.cancel()
            await lock.release()

    result = _run(action, settings.redis_url)
    console.print_json(json.dumps(result.as_dict(), default=str))
    if result.status == "failed":
        raise typer.Exit(1)


@app.command("daemon")
def daemon() -> None:
    """Run the trainer's worker in the foreground (lead, collect, train) until Ctrl-C."""
    settings = _trainer_settings()

    async def action(redis: HivemindRedis) -> None:
        from hivemind_trainer.worker import TrainerWorker

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await TrainerWorker(redis, settings).run(stop)

    _run(action, settings.redis_url)


app.command("import")(import_command)  # hivemind_trainer.import_cli (issue 18, helper G)

app.command("estimate")(estimate_command)  # hivemind_trainer.estimate_cli (issue 19, helper H)
