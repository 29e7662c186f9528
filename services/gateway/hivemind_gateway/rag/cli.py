"""``hivemind rag calibrate SET.json``: measure the gate for the serving embedding model.

Reaches the ``hivemind`` command through the ``hivemind.commands`` entry point (the CLI
discovers it); only the CLI imports this module, so the gateway itself never loads typer.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import typer

from hivemind_gateway.rag.calibration import write_calibration
from hivemind_gateway.rag.evaluation import calibrate, load_eval_set, service_encoder

app = typer.Typer(help="Retrieval: calibrate the injection gate.", no_args_is_help=True)


@app.command("calibrate")
def calibrate_command(
    eval_set: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help='{"facts", "queries", "unanswerable"} as JSON.'
    ),
    max_unanswerable: float = typer.Option(
        0.10, min=0.0, max=1.0, help="Most unanswerable queries that may get anything injected."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the result, write nothing."),
) -> None:
    """Sweep the gate on EVAL_SET with the serving embedding model; write its calibration."""
    from hivemind_gateway.settings import GatewaySettings

    settings = GatewaySettings()
    try:
        data = load_eval_set(eval_set)  # checked before the service is asked anything
        encode, model = service_encoder(settings)
        vectors: dict[str, np.ndarray] = {}

        def cached(texts: list[str]) -> np.ndarray:  # the sweep re-encodes the same texts
            todo = [t for t in dict.fromkeys(texts) if t not in vectors]
            if todo:
                vectors.update(zip(todo, encode(todo), strict=True))
            return np.stack([vectors[t] for t in texts])

        result = calibrate(data, cached, max_unanswerable=max_unanswerable)
    except httpx.HTTPStatusError as exc:
        typer.echo(
            f"error: the embedding service refused the set ({exc.response.status_code}): "
            f"{exc.response.text[:300]}",
            err=True,
        )
        raise typer.Exit(2) from exc
    except httpx.HTTPError as exc:
        typer.echo(f"error: the embedding service did not answer: {exc}", err=True)
        raise typer.Exit(2) from exc
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps({"model": model, **result}, indent=2))
    if dry_run:
        return
    path = write_calibration(settings.data_dir, model, result, str(eval_set))
    typer.echo(f"wrote {path}; the gateway reads it for {model} at its next start", err=True)
