"""Gateway settings (environment variables prefixed HIVEMIND_)."""

from __future__ import annotations

from hivemind_common.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    service_name: str = "gateway"

    # limits on what callers send
    max_body_bytes: int = 4 * 1024 * 1024
    max_fact_value_chars: int = 64 * 1024
    max_memory_text_chars: int = 64 * 1024

    # upstream calls
    upstream_timeout_s: float = 120.0
    embedding_url: str | None = None  # overrides the hosts registry
    inference_url: str | None = None
    trainer_url: str | None = None

    # retrieval injected into chats
    rag_enabled: bool = True
    rag_budget_tokens: int = 512

    # search index and the embedding client (memory and retrieval)
    embedding_timeout_s: float = 3.0
    embedding_retry_after_s: float = 2.0  # skip the embedding service this long after a failure
    search_ann_threshold: int = 20_000  # rows of one kind above which an HNSW graph is used

    # capture of completed chats for learning (off by default)
    capture_default: bool = False

    # OpenAI routes: response cache and `model: "auto"` routing (prompt length, task)
    response_cache_ttl_s: int = 6 * 3600
    auto_small_model: str = "default"
    auto_large_model: str = "default"
    auto_large_above_chars: int = 6000
    auto_large_tasks: tuple[str, ...] = ("code-assist",)
