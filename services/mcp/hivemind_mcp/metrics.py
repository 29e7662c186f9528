"""The bridge's own Prometheus series (module-level, low-cardinality labels)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

TOOL_CALLS = Counter(
    "hivemind_mcp_tool_calls_total",
    "Tool calls that reached the gateway step, by tool and outcome (ok or error).",
    ["tool", "outcome"],
)
GATEWAY_SECONDS = Histogram(
    "hivemind_mcp_gateway_seconds",
    "Time of the gateway call behind a tool, by tool.",
    ["tool"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120),
)
KEY_CHECKS = Counter(
    "hivemind_mcp_key_checks_total",
    "Bearer keys at the /mcp door: remembered, accepted, refused, missing or unchecked.",
    ["result"],
)
