"""``hivemind learn import FILE... --format auto|alpaca|sharegpt|openai|glaive``.

Registered on the ``learn`` group with one line (``app.command("import")(import_command)``).
Imports nothing heavy at module level: torch is never needed to import data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer


def _count_lines(path: Path) -> int | None:
    """Lines of a JSONL file (the progress bar's total); None for other files."""
    if path.suffix.lower() not in (".jsonl", ".ndjson"):
        return None
    with path.open("rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))


def import_command(
    files: list[Path] = typer.Argument(
        ..., exists=True, dir_okay=False, readable=True, help="JSON, JSONL or Parquet files."
    ),
    fmt: str = typer.Option(
        "auto", "--format", help="auto, alpaca, sharegpt, openai or glaive (auto: per record)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON."),
) -> None:
    """Import datasets: normalise every record to a chat, filter, scrub and dedup it as a
    captured sample, and store it with its provenance (import:<file>, line)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from hivemind_cli.redis_cli import run_with_redis
    from hivemind_common.audit import cli_audited
    from hivemind_trainer.cli import _trainer_settings
    from hivemind_trainer.data.importer import FORMATS, Importer, ImportStats

    if fmt not in FORMATS:
        typer.echo(f"error: --format is one of {', '.join(FORMATS)}", err=True)
        raise typer.Exit(2)
    settings = _trainer_settings()
    console = Console(stderr=True)

    async def action(redis: Any) -> ImportStats:
        from hivemind_trainer.data.dataset import Dataset
        from hivemind_trainer.data.sample_filter import NearDupIndex, SampleFilter

        dataset = Dataset(settings.datasets_dir, heldout_fraction=settings.heldout_fraction)
        sample_filter = SampleFilter(
            min_tokens=settings.min_tokens,
            max_tokens=settings.max_tokens,
            min_rating=settings.min_rating,
            near_dups=NearDupIndex(settings.near_dup_threshold),
        )
        importer = Importer(redis, dataset, sample_filter)
        stats = ImportStats()
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[accepted]} accepted"),
            TimeElapsedColumn(),
        )
        async with cli_audited(redis, "learning.import") as entry:
            with Progress(*columns, console=console, disable=as_json) as bar:
                for path in files:
                    task = bar.add_task(path.name, total=_count_lines(path), accepted=0)
                    before = stats.read

                    def progress(read: int, task: Any = task, before: int = before) -> None:
                        if (read - before) % 64 == 0:
                            bar.update(task, completed=read - before, accepted=stats.accepted)

                    await importer.import_file(path, fmt, stats=stats, progress=progress)
                    bar.update(task, completed=stats.read - before, accepted=stats.accepted)
                    bar.update(task, total=stats.read - before)
            entry.target = ",".join(p.name for p in files)[:200]
            entry.detail = f"read={stats.read} accepted={stats.accepted}"
        return stats

    stats = run_with_redis(action, settings.redis_url)
    data = stats.as_dict()
    if as_json:
        typer.echo(json.dumps(data))
        return
    out = Console()
    out.print(
        f"read {data['read']} records from {data['files']} file(s) in {data['seconds']} s "
        f"({data['records_per_s']} records/s): {data['accepted']} stored"
    )
    for outcome, n in sorted(data["outcomes"].items(), key=lambda kv: -kv[1]):
        out.print(f"  {outcome:16} {n}")
