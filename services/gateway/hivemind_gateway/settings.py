"""Gateway settings (environment variables prefixed HIVEMIND_)."""

from __future__ import annotations

import os

from pydantic import Field

from hivemind_common import keys
from hivemind_common.body_limit import BodyLimits
from hivemind_common.settings import ServiceSettings

MIB = 1024 * 1024


class GatewaySettings(ServiceSettings):
    service_name: str = "gateway"

    # limits on what callers send: body caps per route family (bytes, checked before parsing;
    # see hivemind_common.body_limit), max_body_bytes for every other route
    max_body_bytes: int = Field(default=4 * MIB, ge=1024)
    max_body_bytes_chat: int = Field(default=8 * MIB, ge=1024)  # chat, messages, responses
    max_body_bytes_completions: int = Field(default=8 * MIB, ge=1024)
    max_body_bytes_embeddings: int = Field(default=8 * MIB, ge=1024)
    max_body_bytes_facts: int = Field(default=1 * MIB, ge=1024)
    max_body_bytes_memories: int = Field(default=8 * MIB, ge=1024)  # memories and sessions
    max_body_bytes_learning: int = Field(default=8 * MIB, ge=1024)
    max_body_bytes_docs: int = Field(default=32 * MIB, ge=1024)  # documents, one or a batch
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
    # the gate (see hivemind_gateway/rag/scoring.py); None keeps the default, which is calibrated
    # for all-MiniLM-L6-v2: another embedding model has its own cosine scale and needs its own
    # (docs/retrieval.md says how to measure it)
    rag_inject_threshold: float | None = Field(default=None, ge=-1, le=2)
    rag_min_dense: float | None = Field(default=None, ge=-1, le=1)
    rag_near_threshold: float | None = Field(default=None, ge=-1, le=2)
    rag_margin: float | None = Field(default=None, ge=0, le=2)
    rag_distinct_gap: float | None = Field(default=None, ge=0, le=2)
    rag_max_items: int | None = Field(default=None, ge=1, le=100)
    # ranking (hivemind_gateway/rag/scoring.py, docs/retrieval.md): weights of the z-normalised
    # dense and lexical scores, of the best score of an item's session, of the boost for items
    # that say when something happened when the query asks when, and of the boost for items
    # dated (metadata.date / occurred_at) within a time the query names; and, for document
    # chunks, of their document's topic (the mean of its chunks' vectors)
    rag_rank_dense: float | None = Field(default=None, ge=0, le=10)
    rag_rank_lexical: float | None = Field(default=None, ge=0, le=10)
    rag_session_weight: float | None = Field(default=None, ge=0, le=10)
    rag_time_boost: float | None = Field(default=None, ge=0, le=10)
    rag_date_boost: float | None = Field(default=None, ge=0, le=10)
    rag_doc_weight: float | None = Field(default=None, ge=0, le=10)

    # search index and the embedding client (memory and retrieval)
    embedding_timeout_s: float = 3.0
    embedding_retry_after_s: float = 2.0  # skip the embedding service this long after a failure
    search_ann_threshold: int = 20_000  # rows of one kind above which an HNSW graph is used

    # the reference library (hivemind_gateway/docs): chunk sizes in the served model's tokens
    max_doc_chars: int = Field(default=2_000_000, ge=1)
    docs_chunk_tokens: int = Field(default=256, ge=16, le=2048)
    docs_overlap_tokens: int = Field(default=32, ge=0, le=2047)
    docs_max_chunks: int = Field(default=10_000, ge=1)  # one document's chunks, and one request's
    # the most of a retrieval budget that reference library passages may take (0: none)
    rag_docs_share: float = Field(default=0.5, ge=0, le=1)

    # capture of completed chats for learning (off by default)
    capture_default: bool = False

    # the retrieval log (suggestions quote it): older entries are trimmed on write, never read
    rag_log_retention_days: float = Field(default=30.0, gt=0, le=3650)

    # worker processes sharing the port (None: one per core); each has its own search index
    gateway_workers: int | None = Field(default=None, ge=1, le=64)
    # verified API keys remembered in each process (0: every request reads Redis); a revoke
    # reaches every process within a second whatever this is (hivemind_common/key_cache.py)
    key_cache_ttl_s: float = Field(default=5.0, ge=0, le=300)
    # GET /v1/facts/{key} answered beside the framework, same checks and answers
    # (hivemind_gateway/hot_path.py); false sends it through FastAPI like every other route
    gateway_hot_path: bool = True

    # request rates (hivemind_gateway/limits.py): a key without its own rpm gets this (0: none);
    # tenants' own rpm and quotas are set with `hivemind tenants set`
    default_key_rpm: int = Field(default=1200, ge=0)
    # live API keys one tenant may hold, made through POST /v1/keys (0: no limit): every key is
    # a record in Redis, and listing keys reads every record (the CLI is not limited)
    max_keys_per_tenant: int = Field(default=1000, ge=0)
    # chats and completions one tenant may run at once, on every gateway together (0: no cap)
    max_inference_per_tenant: int = Field(default=8, ge=0)
    # learning samples (posted and captured) one tenant may queue a day, in MiB (0: no limit):
    # the learning stream is shared, so one tenant must not fill Redis or crowd out the others
    learning_mb_per_tenant_day: int = Field(default=64, ge=0)
    # and in samples: the stream is capped in entries (200,000), so small samples within the
    # bytes could still push the other tenants' unread ones off it
    learning_samples_per_tenant_day: int = Field(default=20_000, ge=0)

    # OpenAI routes: response cache and `model: "auto"` routing (prompt length, task)
    response_cache_ttl_s: int = Field(default=keys.RESPONSE_CACHE_TTL_S, ge=1)
    auto_small_model: str = "default"
    auto_large_model: str = "default"
    auto_large_above_chars: int = 6000
    auto_large_tasks: tuple[str, ...] = ("code-assist",)
    # Anthropic Messages API: the local model that `claude-*` model names are served by
    claude_model: str = "auto"

    def worker_count(self) -> int:
        """``gateway_workers``, else one per core this process may run on (at most 8)."""
        if self.gateway_workers is not None:
            return self.gateway_workers
        return max(1, min(8, len(os.sched_getaffinity(0))))

    def body_limits(self) -> BodyLimits:
        """The body cap of every route family, for the body-limit layer."""
        chat = self.max_body_bytes_chat
        return BodyLimits.of(
            self.max_body_bytes,
            [
                ("/v1/chat/completions", chat),
                ("/v1/messages", chat),
                ("/v1/responses", chat),
                ("/v1/completions", self.max_body_bytes_completions),
                ("/v1/embeddings", self.max_body_bytes_embeddings),
                ("/v1/facts", self.max_body_bytes_facts),
                ("/v1/memories", self.max_body_bytes_memories),
                ("/v1/sessions", self.max_body_bytes_memories),
                ("/v1/learning", self.max_body_bytes_learning),
                ("/v1/docs", self.max_body_bytes_docs),
            ],
        )
