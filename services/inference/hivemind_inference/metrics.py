"""Prometheus objects of the inference service (module-level, low-cardinality labels)."""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Gauge, Histogram

QUEUE_DEPTH = Gauge(
    "hivemind_inference_queue_depth", "Requests admitted to a model and not yet done.", ["model"]
)
REJECTED = Counter(
    "hivemind_inference_rejected_total",
    "Requests refused because a model's queue was full.",
    ["model"],
)
TOKENS = Counter(
    "hivemind_inference_tokens_total",
    "Tokens processed, by kind (prompt or completion).",
    ["model", "kind"],
)
SWAPS = Counter(
    "hivemind_inference_swaps_total", "Hot-swaps by outcome (ok or failed).", ["model", "outcome"]
)
SWAP_SECONDS = Histogram(
    "hivemind_inference_swap_seconds",
    "Load, smoke test and switch of a new model copy (drain not included).",
    ["model"],
    buckets=(0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
)

SERVED_VERSION = Gauge(
    "hivemind_inference_served_version_info",
    "1 for the version each model serves now (the label carries the version).",
    ["model", "version"],
)


def mark_served(model: str, version: str, previous: str | None = None) -> None:
    """Point the served-version gauge at ``version`` (and drop the previous one's series)."""
    if previous is not None and previous != version:
        with contextlib.suppress(KeyError):
            SERVED_VERSION.remove(model, previous)
    SERVED_VERSION.labels(model, version).set(1)


RECONCILES = Counter(
    "hivemind_inference_reconcile_total",
    "Comparisons with the model registry that found something: repaired, busy (a deploy runs), "
    "failed, unreadable (at start-up) or backing_off.",
    ["model", "outcome"],
)
REGISTRY_AGREES = Gauge(
    "hivemind_inference_registry_agrees",
    "1 when the served version is the model registry's serving version (or it names none).",
    ["model"],
)
