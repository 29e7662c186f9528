"""The gateway's state: one typed object, made once by the lifespan, read by every route."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from hivemind_common.auth import ApiKeyStore
from hivemind_common.redis import HivemindRedis
from hivemind_gateway.settings import GatewaySettings

if TYPE_CHECKING:  # the rooms below import deps (and so this module) themselves
    from hivemind_gateway.limits import RequestLimiter
    from hivemind_gateway.openai.served import ServedModels
    from hivemind_gateway.rag.gate import GateConfig
    from hivemind_gateway.search.sync import SearchIndex


@dataclass(eq=False)
class GatewayState:
    """Clients, index and caches of one gateway process (``app.state.gateway``)."""

    settings: GatewaySettings
    redis: HivemindRedis
    api_keys: ApiKeyStore
    rate_limiter: RequestLimiter
    embedding_http: httpx.AsyncClient
    inference_http: httpx.AsyncClient
    served_models: ServedModels
    search: SearchIndex
    # made on first use: the retrieval gate of the serving embedding model, and the
    # characters-per-token ratio of each served model
    rag_gate: GateConfig | None = None
    rag_gate_model: str | None = None
    token_ratios: dict[str, float] | None = None
