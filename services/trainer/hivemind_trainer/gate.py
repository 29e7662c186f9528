"""The evaluation gate: a new version is deployable only if it is no worse than the served one.

Two measurements, each taken on the served model (before training) and on the candidate:

- held-out loss: on every held-out sample of the dataset so far; the candidate must not be worse
  (``heldout_tolerance``, default 0, relative);
- general loss: on a fixed set of short general chats kept in the repo
  (``hivemind_trainer/data/general_eval.jsonl``); the candidate must be within 2%.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any

Chat = list[dict[str, str]]


@dataclass
class GateResult:
    deployable: bool
    served: dict[str, float]
    candidate: dict[str, float]
    reasons: list[str] = field(default_factory=list)
    heldout_tolerance: float = 0.0
    general_tolerance: float = 0.02

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def general_eval_set() -> list[Chat]:
    """The fixed general chats shipped with the trainer."""
    text = resources.files("hivemind_trainer.data").joinpath("general_eval.jsonl").read_text()
    return [json.loads(line)["messages"] for line in text.splitlines() if line.strip()]


def decide(
    *,
    served: dict[str, float],
    candidate: dict[str, float],
    heldout_tolerance: float = 0.0,
    general_tolerance: float = 0.02,
) -> GateResult:
    """Compare ``{"heldout": loss, "general": loss}`` of the candidate against the served model."""
    reasons: list[str] = []
    ok = True
    for key in ("heldout", "general"):
        new, old = candidate.get(key, math.nan), served.get(key, math.nan)
        if key == "heldout" and math.isnan(old) and math.isnan(new):
            reasons.append("no held-out samples yet: held-out check skipped")
            continue
        if math.isnan(new) or math.isinf(new):
            ok = False
            reasons.append(f"{key} loss of the candidate is not a number")
            continue
        tolerance = heldout_tolerance if key == "heldout" else general_tolerance
        limit = old * (1 + tolerance)
        if new > limit:
            ok = False
            reasons.append(f"{key} loss {new:.4f} worse than served {old:.4f} (limit {limit:.4f})")
        else:
            reasons.append(f"{key} loss {new:.4f} vs served {old:.4f}: ok")
    return GateResult(
        deployable=ok,
        served=served,
        candidate=candidate,
        reasons=reasons,
        heldout_tolerance=heldout_tolerance,
        general_tolerance=general_tolerance,
    )
