"""What each version's learning did, as the trainer's gate and the exporter's task eval measured
it: the figures ``hivemind learn status`` shows (``/v1/models/versions`` shows the same
``metrics``)."""

from __future__ import annotations

from typing import Any

from hivemind_common.model_registry import ModelRegistry

FIGURES = (
    "heldout_loss",
    "general_loss",
    "general_accuracy",
    "base_general_accuracy",
    "task_f1",
    "served_task_f1",
    "task_exact",
    "task_style",
    "task_general_f1",
    "task_eval_passed",
    "llama_heldout_loss",
    "llama_general_loss",
    "llama_base_general_loss",
    "objective",
    "preference_stage",
    "preference_accuracy",
    "served_preference_accuracy",
    "foundation",
)


async def recent_version_figures(redis: Any, model: str, *, limit: int = 5) -> list[dict[str, Any]]:
    """The newest versions of ``model``, newest first, with their figures (files not read)."""
    versions = await ModelRegistry(redis, ".").list(model)
    rows = [
        {
            "version": mv.version,
            "status": mv.status,
            **{k: mv.metrics[k] for k in FIGURES if k in mv.metrics},
        }
        for mv in reversed(versions)
    ]
    return rows[:limit]


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
