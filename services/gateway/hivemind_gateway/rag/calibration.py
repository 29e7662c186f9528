"""Per-model calibration of the gate: its thresholds, measured on an eval set, kept on disk.

An embedding model has its own cosine scale: how high unrelated sentences score and how high
paraphrases do. The gate's thresholds (``GateConfig``) are calibrated for all-MiniLM-L6-v2;
``rag.evaluation.calibrate`` shifts all of its absolute thresholds together (the scale) and
sweeps the lead a lone answer needs (``distinct_gap``) on a set of facts with answerable and
unanswerable questions, and keeps the setting that injects the right fact most often while injecting
anything for at most ``max_unanswerable`` of the unanswerable questions; among equally good
shifts it takes the middle of the run, away from both edges.

The result is written to ``$HIVEMIND_DATA_DIR/calibration/<model>.json`` and the gateway reads
it for the model that is serving (``gate_config``); ``HIVEMIND_RAG_*`` settings still win.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

SHIFTED = ("inject_threshold", "min_dense", "near_threshold", "distinct_min_dense")
CALIBRATED = (*SHIFTED, "distinct_gap")


def calibration_path(data_dir: Path, model: str) -> Path:
    """Where the calibration of ``model`` lives (one file per model id)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", model).strip("._") or "model"
    return Path(data_dir) / "calibration" / f"{safe}.json"


def load_calibration(data_dir: Path, model: str | None) -> dict[str, float]:
    """The calibrated gate fields for ``model``; empty when none was written (or unreadable)."""
    if not model:
        return {}
    path = calibration_path(data_dir, model)
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    gate = raw.get("gate", {}) if isinstance(raw, dict) else {}
    return {
        k: float(v)
        for k, v in gate.items()
        if k in CALIBRATED and isinstance(v, int | float) and not isinstance(v, bool)
    }


def write_calibration(data_dir: Path, model: str, result: dict[str, Any], source: str) -> Path:
    path = calibration_path(data_dir, model)
    path.parent.mkdir(parents=True, exist_ok=True)
    # written whole, then renamed: a gateway starting meanwhile reads the old file or the new
    # one, never half of one (which it would take for "no calibration" until a restart)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"model": model, "eval_set": source, **result}, indent=2) + "\n")
    os.replace(tmp, path)
    return path
