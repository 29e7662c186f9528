"""Embedding service settings (environment variables prefixed HIVEMIND_)."""

from __future__ import annotations

from hivemind_common.settings import ServiceSettings


class EmbeddingSettings(ServiceSettings):
    service_name: str = "embedding"
