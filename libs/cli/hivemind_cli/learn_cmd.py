"""``hivemind learn status|collect|train-now|daemon`` (the learning loop)."""

from __future__ import annotations

import typer

app = typer.Typer(help="The learning loop: collect, train, evaluate, deploy.", no_args_is_help=True)
