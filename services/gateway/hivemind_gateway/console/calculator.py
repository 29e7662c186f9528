"""The calculator page: the training memory estimate for a base, mode, sequence length and batch.

It calls :mod:`hivemind_common.train_estimate`, the same pure-Python code as ``hivemind learn
estimate`` and the trainer's own fit check, from a plain GET form (nothing changes state). A base
is one of a few well-known ``config.json`` shapes, or sizes typed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hivemind_common import train_estimate

# config.json values of bases people train (Hugging Face keys, as from_hf_config reads them)
BASES: dict[str, dict[str, Any]] = {
    "SmolLM2-135M (the shipped default)": {
        "hidden_size": 576,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "intermediate_size": 1536,
        "vocab_size": 49152,
        "tie_word_embeddings": True,
    },
    "Qwen2.5-Coder-1.5B": {
        "hidden_size": 1536,
        "num_hidden_layers": 28,
        "num_attention_heads": 12,
        "num_key_value_heads": 2,
        "intermediate_size": 8960,
        "vocab_size": 151936,
        "tie_word_embeddings": True,
    },
    "Qwen2.5-Coder-7B": {
        "hidden_size": 3584,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "intermediate_size": 18944,
        "vocab_size": 152064,
        "tie_word_embeddings": False,
    },
    "Llama-3.1-8B": {
        "hidden_size": 4096,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "intermediate_size": 14336,
        "vocab_size": 128256,
        "tie_word_embeddings": False,
    },
}
DEFAULTS = {
    "base": next(iter(BASES)),
    "mode": "lora",
    "optimizer": "adamw",
    "dtype": "float32",
    "device": "cpu",
    "seq_len": "1024",
    "batch": "4",
    "lora_rank": "8",
}
INT_FIELDS = {"seq_len": (1, 1_048_576), "batch": (1, 4096), "lora_rank": (1, 1024)}
PARTS = ("weights", "gradients", "optimizer", "activations", "overhead")


def _choices() -> dict[str, tuple[str, ...]]:
    return {
        "base": tuple(BASES),
        "mode": train_estimate.MODES,
        "optimizer": train_estimate.OPTIMIZERS,
        "dtype": tuple(train_estimate.DTYPE_BYTES),
        "device": ("cpu", "cuda"),
    }


def calculator_context(params: Mapping[str, str]) -> dict[str, Any]:
    """What the calculator template shows for the query string ``params``."""
    choices = _choices()
    form = {k: str(params.get(k, v))[:100] for k, v in DEFAULTS.items()}
    form["checkpointing"] = "on" if params.get("checkpointing") == "on" else ""
    errors: list[str] = []
    for name, allowed in choices.items():
        if form[name] not in allowed:
            errors.append(f"{name} must be one of: {', '.join(allowed)}")
    numbers: dict[str, int] = {}
    for name, (low, high) in INT_FIELDS.items():
        raw = form[name]
        # ASCII digits only: "²".isdigit() is true and int("²") raises
        if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
            errors.append(f"{name.replace('_', ' ')} must be a whole number from {low} to {high}")
        else:
            numbers[name] = int(raw)
    result = None
    if not errors:
        shape = train_estimate.ModelShape.from_hf_config(BASES[form["base"]])
        try:
            estimate = train_estimate.estimate_memory(
                shape,
                mode=form["mode"],
                optimizer=form["optimizer"],
                dtype=form["dtype"],
                device=form["device"],
                checkpointing=bool(form["checkpointing"]),
                **numbers,
            )
        except ValueError as exc:  # the estimator's own checks, in its words
            errors.append(str(exc))
        else:
            figures = estimate.as_dict()
            total = max(1, figures["total"])
            result = {
                "parts": [(p, figures[p], 100.0 * figures[p] / total) for p in PARTS],
                "total": figures["total"],
                "params": figures["params"],
                "trainable_params": figures["trainable_params"],
            }
    return {
        "calc": {
            "form": form,
            "choices": choices,
            "errors": errors,
            "result": result,
        }
    }
