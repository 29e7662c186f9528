"""Prometheus objects of the exporter (module level, low-cardinality labels)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EXPORT_JOBS = Counter(
    "hivemind_exporter_jobs_total",
    "Export jobs handled, by result (succeeded, exported, skipped, failed).",
    ["result"],
)
EXPORT_STAGE_SECONDS = Histogram(
    "hivemind_exporter_stage_seconds",
    "Seconds spent in each export stage (load, adapter, merge, f16, quantize, validate).",
    ["stage"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320),
)
EXPORT_AGREEMENT = Gauge(
    "hivemind_exporter_top1_agreement",
    "Top-1 next-token agreement of the latest export with PyTorch, by file.",
    ["file"],
)
DEPLOYS = Counter(
    "hivemind_exporter_deploys_total", "Hot-swaps asked of inference, by result.", ["result"]
)
# present at 0 from the start, so the alert's increase() sees the very first failure
DEPLOYS.labels(result="failed")
DEPLOYS.labels(result="succeeded")
