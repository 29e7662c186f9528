"""``hivemind memories import FILE.jsonl``: many memories through ``POST /v1/memories/batch``.

Each line of the file is one ``POST /v1/memories`` body (``{"text", "session_id"?, "tags"?,
"metadata"?, "id"?}``). Lines go to the gateway in batches (by count and by bytes); a line that
cannot be read or sent, or that the gateway refuses, is reported with its line number and the
import goes on. A line without an ``id`` gets one derived from the file's name and the line's
text and number, so an import run again, or a batch sent again after a timeout, stores nothing
twice. The
gateway is found like every client finds it (``HIVEMIND_GATEWAY_URL`` or the hosts registry);
the key comes from ``HIVEMIND_API_KEY``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

app = typer.Typer(help="Memories in bulk.", no_args_is_help=True)

BATCH = 200  # the gateway takes up to 500 a call; 200 keeps one call well under a second
BATCH_BYTES = 4 * 1024 * 1024  # half the gateway's body limit
RETRIES = 3


class _Refused(str):
    """Why a line could not be read (a line holding a JSON string is a body, not this)."""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _lines(path: Path) -> Iterator[tuple[int, Any, bytes]]:
    """(line number, parsed body or why it cannot be used, the body as sent); blank lines are
    skipped. A body that parses but cannot be sent as JSON (1e400 reads as infinity; "\\ud800"
    as a lone surrogate) is refused here, by its line, rather than ending the import."""
    stem = hashlib.sha256(path.name.encode("utf-8", "replace")).hexdigest()[:8]
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                yield number, _Refused("not UTF-8 text"), b""
                continue
            if not line.strip():
                continue
            try:
                body = json.loads(line, parse_constant=_no_constant)
            except RecursionError:
                yield number, _Refused("not JSON: nested too deeply"), b""
                continue
            except ValueError as exc:
                yield number, _Refused(f"not JSON: {exc}"), b""
                continue
            if isinstance(body, dict) and body.get("id") is None:  # absent, or null
                # the same line of the same file names the same memory: stored once (its number
                # too: two equal lines are two memories, as they were before ids)
                digest = hashlib.sha256(f"{number}\0{line.strip()}".encode()).hexdigest()[:24]
                body = {**body, "id": f"imp-{stem}-{digest}"}
            try:
                sent = json.dumps(body, ensure_ascii=False, allow_nan=False).encode("utf-8")
            except (ValueError, TypeError) as exc:
                yield number, _Refused(f"cannot be sent as JSON: {exc}"), b""
                continue
            if len(sent) > BATCH_BYTES:  # the gateway would refuse the whole batch it rode in
                yield number, _Refused(f"{len(sent)} bytes; a line may have {BATCH_BYTES}"), b""
                continue
            yield number, body, sent


def _post(client: httpx.Client, items: list[bytes]) -> list[dict[str, Any]]:
    """One batch, retried on a lost connection, a timeout, a 5xx or a 429: every item names
    its id, so a batch that was partly stored is stored once when it is sent again."""
    payload = b'{"memories": [' + b", ".join(items) + b"]}"
    headers = {"Content-Type": "application/json"}
    for attempt in range(RETRIES):
        last = attempt == RETRIES - 1
        try:
            r = client.post("/v1/memories/batch", content=payload, headers=headers)
        except httpx.TransportError:
            if last:
                raise
            time.sleep(0.5 * 2**attempt)
            continue
        if (r.status_code == 429 or r.status_code >= 500) and not last:
            time.sleep(min(float(r.headers.get("retry-after", "1") or 1), 30.0))
            continue
        if r.status_code != 200:
            raise RuntimeError(f"the gateway answered {r.status_code}: {r.text[:300]}")
        results: list[dict[str, Any]] = r.json()["results"]
        return results
    raise RuntimeError("unreachable")


def _gateway_url(given: str | None) -> str:
    if given:
        return given.rstrip("/")
    from hivemind_common.hosts import service_url

    return service_url("gateway")


@app.command("import")
def import_memories(
    file: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="JSON Lines, one memory a line."
    ),
    gateway_url: str = typer.Option(
        None, help="The gateway (default: HIVEMIND_GATEWAY_URL or hosts.yaml)."
    ),
    batch: int = typer.Option(BATCH, min=1, max=500, help="Memories per request."),
) -> None:
    """Store every memory in FILE; prints a summary and the lines that were refused."""
    key = os.environ.get("HIVEMIND_API_KEY")
    if not key:
        typer.echo("error: set HIVEMIND_API_KEY to a write key of the tenant", err=True)
        raise typer.Exit(2)
    with file.open("rb") as fh:  # counted as the reader skips blank lines
        total = sum(1 for raw in fh if raw.decode("utf-8", "replace").strip())
    stored = 0
    refused: list[tuple[int, str]] = []
    started = time.perf_counter()
    headers = {"Authorization": f"Bearer {key}"}
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(),
    )
    with (
        httpx.Client(base_url=_gateway_url(gateway_url), headers=headers, timeout=60) as client,
        Progress(*columns, transient=False) as bar,
    ):
        task = bar.add_task("memories", total=total)
        pending: list[tuple[int, bytes]] = []
        size = 0

        def flush() -> None:
            nonlocal stored, size
            if not pending:
                return
            results = _post(client, [sent for _, sent in pending])
            for (number, _), result in zip(pending, results, strict=True):
                if result.get("error"):
                    refused.append((number, str(result["error"].get("detail", result["error"]))))
                else:
                    stored += 1
            bar.advance(task, len(pending))
            pending.clear()
            size = 0

        try:
            for number, body, sent in _lines(file):
                if isinstance(body, _Refused):
                    refused.append((number, str(body)))
                    bar.advance(task, 1)
                    continue
                if pending and size + len(sent) > BATCH_BYTES:
                    flush()
                pending.append((number, sent))
                size += len(sent) + 2
                if len(pending) >= batch:
                    flush()
            flush()
        except (httpx.HTTPError, RuntimeError, ValueError) as exc:
            # a batch whose fate is unknown (a timeout, a 5xx): say what is known and stop
            first = pending[0][0] if pending else None
            typer.echo(
                f"error: {exc}; stored {stored} memories before it"
                + (
                    f"; lines from {first} on were not confirmed (running the import again "
                    "stores each line once)"
                    if first
                    else ""
                ),
                err=True,
            )
            raise typer.Exit(1) from exc
    elapsed = time.perf_counter() - started
    rate = stored / max(elapsed, 1e-9)
    typer.echo(f"stored {stored} of {total} memories in {elapsed:.1f} s ({rate:.0f}/s)")
    for number, why in refused[:20]:
        typer.echo(f"line {number}: {why}", err=True)
    if len(refused) > 20:
        typer.echo(f"... and {len(refused) - 20} more refused lines", err=True)
    if refused:
        raise typer.Exit(1)
