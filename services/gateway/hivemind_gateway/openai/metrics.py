"""Prometheus objects of the gateway's OpenAI routes (module-level, low-cardinality labels)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

RESPONSE_CACHE = Counter(
    "hivemind_gateway_response_cache_total",
    "Chat and text completions by cache outcome (hit, miss, bypass).",
    ["kind", "result"],
)
CAPTURED = Counter(
    "hivemind_gateway_captured_total",
    "Completed chats appended to the learning stream (ok), left out (over_budget: the tenant's "
    "daily learning budget is spent) or lost (failed).",
    ["outcome"],
)
RETRIEVAL_SECONDS = Histogram(
    "hivemind_gateway_chat_retrieval_seconds",
    "Time spent retrieving and fitting context for one chat.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
CHAT_REQUESTS = Counter(
    "hivemind_gateway_chat_requests_total",
    "Chats through the one chat pipeline, by wire format (chat, messages, responses).",
    ["api", "mode"],
)
