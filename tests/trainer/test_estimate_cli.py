"""``hivemind learn estimate``: the parts printed, JSON, and bad input as a clear error."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from hivemind_cli.main import app

CONFIG = {
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_attention_heads": 9,
    "num_hidden_layers": 30,
    "num_key_value_heads": 3,
    "tie_word_embeddings": True,
    "vocab_size": 49152,
}


def test_estimate_prints_each_part_and_whether_it_fits(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    args = ["learn", "estimate", "--base", str(tmp_path), "--mode", "full", "--seq-len", "512"]
    out = CliRunner().invoke(app, [*args, "--batch", "2", "--available-gib", "2"])
    assert out.exit_code == 0, out.output
    for part in ("weights", "gradients", "optimizer", "activations", "overhead", "total"):
        assert part in out.output
    assert "does NOT fit" in out.output  # a full run of 135M params needs more than 1.8 GiB
    out = CliRunner().invoke(
        app, [*args, "--batch", "2", "--checkpointing", "--optimizer", "muon", "--json"]
    )
    data = json.loads(out.output)
    assert data["bytes"]["total"] > data["bytes"]["weights"] > 0 and data["checkpointing"]
    assert data["shape"]["num_layers"] == 30


def test_estimate_rejects_bad_input_with_a_message(tmp_path: Path) -> None:
    out = CliRunner().invoke(app, ["learn", "estimate", "--base", str(tmp_path)])
    assert out.exit_code == 2 and "cannot read" in out.output
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    out = CliRunner().invoke(app, ["learn", "estimate", "--base", str(tmp_path), "--mode", "half"])
    assert out.exit_code == 2 and "mode must be one of" in out.output
