"""The recipe settings a training request may override, with their types and bounds.

``POST /v1/learning/train`` and ``hivemind learn train-now --set key=value`` take overrides as
strings. They are checked here, without torch, where the request comes in (the gateway): an
unknown key, a value that is not of its type, NaN, or one out of range is a 400 at once, rather
than a job that fails after collecting and freezing its data, or, for ``lr=nan``, one that
trains. The trainer's ``RecipeConfig.with_overrides`` checks the same table, and a trainer test
keeps it equal to the recipe's fields.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from hivemind_common.errors import Invalid

MODES = ("fast", "balanced", "best")
METHODS = ("lora", "qlora", "full")
OPTIMIZERS = ("adamw", "adamw8bit", "muon")
DTYPES = ("float32", "bfloat16", "float16")
SWITCH = ("", "auto", "1", "0", "true", "false", "yes", "no")
NONE_WORDS = ("", "none", "None")
_TARGET = re.compile(r"[A-Za-z0-9_.]{1,64}")


@dataclass(frozen=True)
class Rule:
    kind: str  # int | float | choice | targets | text
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    optional: bool = False  # "", "none": the recipe's own default
    open_low: bool = False  # low itself is not allowed (a rate of 0)


RULES: dict[str, Rule] = {
    "mode": Rule("choice", choices=MODES),
    "seq_len": Rule("int", 16, 131_072),
    "batch_size": Rule("int", 0, 4096),  # 0: from free memory
    "epochs": Rule("float", 0, 1000, open_low=True),
    "max_steps": Rule("int", 1, 10_000_000, optional=True),
    "min_steps": Rule("int", 0, 10_000_000),
    "max_epochs": Rule("float", 0, 1000, open_low=True),
    "lr": Rule("float", 0, 1, open_low=True),
    "warmup_steps": Rule("int", 0, 10_000_000),
    "weight_decay": Rule("float", 0, 1),
    "grad_clip": Rule("float", 0, 1e6),
    "lora_r": Rule("int", 1, 1024),
    "lora_alpha": Rule("float", 0, 1e6, open_low=True),
    "lora_dropout": Rule("float", 0, 0.99),
    "targets": Rule("targets"),
    "seed": Rule("int", 0, 2**31 - 1),
    "threads": Rule("int", 1, 1024, optional=True),
    "checkpoint_every": Rule("int", 1, 10_000_000),
    "min_trained_share": Rule("float", 0, 1),
    "max_trained_share": Rule("float", 0, 1),
    "end_token": Rule("text", 0, 64),
    "log_every": Rule("int", 1, 10_000_000),
    "method": Rule("choice", choices=METHODS),
    "optimizer": Rule("choice", choices=OPTIMIZERS),
    "checkpointing": Rule("choice", choices=SWITCH),
    "dtype": Rule("choice", choices=("", *DTYPES)),
}
MAX_OVERRIDES = 32


def check_override(key: str, raw: str, *, param: str | None = None) -> None:
    """Invalid unless ``key=raw`` is a recipe setting and a value it takes."""
    where = param or key
    rule = RULES.get(key)
    if rule is None:
        raise Invalid(
            f"unknown recipe setting {key!r}; one of {', '.join(sorted(RULES))}", param=where
        )
    if not isinstance(raw, str):
        raise Invalid(f"recipe setting {key} takes a string", param=where)
    if rule.optional and raw in NONE_WORDS:
        return
    if rule.kind == "choice":
        value = raw.lower() if rule.choices is SWITCH else raw
        if value not in rule.choices:
            shown = ", ".join(c for c in rule.choices if c) or "(empty)"
            raise Invalid(f"recipe setting {key} is one of {shown}", param=where)
        return
    if rule.kind == "targets":
        names = [t.strip() for t in raw.split(",") if t.strip()]
        if not 1 <= len(names) <= 64 or not all(_TARGET.fullmatch(n) for n in names):
            raise Invalid(
                f"recipe setting {key} is a comma-separated list of module names", param=where
            )
        return
    if rule.kind == "text":
        if len(raw) > (rule.high or 0):
            raise Invalid(
                f"recipe setting {key} is at most {rule.high:.0f} characters", param=where
            )
        return
    try:
        number = int(raw) if rule.kind == "int" else float(raw)
    except ValueError:
        raise Invalid(f"recipe setting {key}={raw!r} is not a {rule.kind}", param=where) from None
    low = rule.low if rule.low is not None else -math.inf
    high = rule.high if rule.high is not None else math.inf
    below = number <= low if rule.open_low else number < low
    if not math.isfinite(number) or below or number > high:
        side = ">" if rule.open_low else ">="
        raise Invalid(
            f"recipe setting {key}={raw!r} is out of range ({side} {low:g} and <= {high:g})",
            param=where,
        )


def check_overrides(overrides: dict[str, str], *, prefix: str = "overrides") -> None:
    """Every override checked (:func:`check_override`), and at most ``MAX_OVERRIDES``."""
    if len(overrides) > MAX_OVERRIDES:
        raise Invalid(f"at most {MAX_OVERRIDES} recipe overrides", param=prefix)
    for key, raw in overrides.items():
        check_override(key, raw, param=f"{prefix}.{key}" if prefix else key)
