"""``hivemind learn estimate``: the memory a training run needs, part by part, before it runs.

Pure arithmetic over the base's shape (:mod:`hivemind_common.train_estimate`): no torch, no
model loaded. ``--base`` is a Hugging Face directory, its ``config.json`` or a ``.gguf`` file
(default: the shipped model). The free memory it compares with is this machine's
(``MemAvailable``) unless ``--available-gib`` names another machine's.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from hivemind_common import train_estimate as te


def _available_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def estimate_command(
    base: Path | None = typer.Option(
        None, "--base", help="HF model directory, config.json or .gguf (default: shipped model)."
    ),
    mode: str = typer.Option("lora", "--mode", help="lora | qlora | full"),
    seq_len: int = typer.Option(512, "--seq-len", min=1, help="Tokens per row."),
    batch: int = typer.Option(1, "--batch", min=1, help="Rows per step."),
    optimizer: str = typer.Option("adamw", "--optimizer", help="adamw | adamw8bit | muon"),
    checkpointing: bool = typer.Option(
        False, "--checkpointing/--no-checkpointing", help="Gradient checkpointing."
    ),
    lora_rank: int = typer.Option(8, "--lora-rank", min=1, help="LoRA rank."),
    dtype: str = typer.Option(
        "float32", "--dtype", help="Compute dtype: float32 | bfloat16 | float16."
    ),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda (the runtime overhead)."),
    available_gib: float | None = typer.Option(
        None, "--available-gib", help="Compare with this much free memory (default: this host)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Weights, gradients, optimizer state and activations of a training run; does it fit?"""
    try:
        if base is None:
            from hivemind_common.models_paths import default_llm_gguf

            base = Path(default_llm_gguf())
        shape = te.shape_from_path(base)
        kwargs = dict(
            mode=mode,
            seq_len=seq_len,
            optimizer=optimizer,
            checkpointing=checkpointing,
            lora_rank=lora_rank,
            dtype=dtype,
            device="cpu" if device == "cpu" else "cuda",
        )
        est = te.estimate_memory(shape, batch=batch, **kwargs)  # type: ignore[arg-type]
    except (ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    available = int(available_gib * 2**30) if available_gib is not None else _available_bytes()
    largest = (
        te.largest_batch(shape, budget_bytes=int(available * 0.9), **kwargs)  # type: ignore[arg-type]
        if available
        else None
    )
    data = {
        "base": str(base),
        "shape": shape.__dict__,
        "mode": mode,
        "seq_len": seq_len,
        "batch": batch,
        "optimizer": optimizer,
        "checkpointing": checkpointing,
        "dtype": dtype,
        "bytes": est.as_dict(),
        "available_bytes": available,
        "fits": None if available is None else est.total <= available * 0.9,
        "largest_batch": largest,
    }
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    mib = 2**20
    typer.echo(
        f"{base.name}: {shape.params / 1e6:.1f}M params, {est.trainable_params / 1e6:.2f}M "
        f"trainable ({mode}, {optimizer}, {dtype}, batch {batch} x {seq_len}"
        f"{', checkpointing' if checkpointing else ''})"
    )
    for part in ("weights", "gradients", "optimizer", "activations", "overhead"):
        typer.echo(f"  {part:<12} {getattr(est, part) / mib:>10.0f} MiB")
    typer.echo(f"  {'total (peak)':<12} {est.total / mib:>10.0f} MiB")
    if available is not None:
        verdict = "fits" if data["fits"] else "does NOT fit"
        free = available / mib
        typer.echo(f"  {verdict} in 90% of {free:.0f} MiB free; largest batch: {largest}")
