"""The retrieval gate's shared steps: the gate's configuration for the serving embedding model,
the query's vector, and one kind's ranked candidates with the gate's verdicts.

Facts search, memory search and the RAG context all use these; they live below all three so no
surface imports another's service.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hivemind_common.errors import Unavailable
from hivemind_gateway.rag.calibration import load_calibration
from hivemind_gateway.rag.scoring import GateConfig, Scored, rank
from hivemind_gateway.search.index import TenantIndex
from hivemind_gateway.search.sync import SearchIndex
from hivemind_gateway.settings import GatewaySettings
from hivemind_gateway.state import GatewayState

_GATE_SETTINGS = {
    "inject_threshold": "rag_inject_threshold",
    "min_dense": "rag_min_dense",
    "near_threshold": "rag_near_threshold",
    "margin": "rag_margin",
    "distinct_gap": "rag_distinct_gap",
    "max_items": "rag_max_items",
    "rank_dense": "rag_rank_dense",
    "rank_lexical": "rag_rank_lexical",
    "session_weight": "rag_session_weight",
    "time_boost": "rag_time_boost",
    "date_boost": "rag_date_boost",
    "doc_weight": "rag_doc_weight",
}


def gate_for(settings: GatewaySettings, model: str | None) -> GateConfig:
    """The gate for ``model``: the defaults (calibrated for all-MiniLM-L6-v2), then the
    calibration written for that embedding model (``hivemind rag calibrate``), then the
    ``HIVEMIND_RAG_*`` settings."""
    fields: dict[str, Any] = load_calibration(settings.data_dir, model)
    fields.update(
        {
            field: getattr(settings, name)
            for field, name in _GATE_SETTINGS.items()
            if getattr(settings, name, None) is not None
        }
    )
    return GateConfig(**fields)


def gate_config(state: GatewayState) -> GateConfig:
    """The gate of the serving embedding model, made once per model and kept on the state."""
    model = state.search.embedder.model_id
    if state.rag_gate is not None and state.rag_gate_model == model:
        return state.rag_gate
    cfg = gate_for(state.settings, model)
    state.rag_gate, state.rag_gate_model = cfg, model
    return cfg


async def embed_query(search: SearchIndex, query: str, *, tenant: str) -> np.ndarray | None:
    """The query's vector, or None (fallback) when the embedding service is away."""
    try:
        return await search.embedder.embed_query(tenant, query[:4000])
    except Unavailable:
        return None


def score_kind(
    index: TenantIndex,
    kind: str,
    vec: np.ndarray | None,
    query: str,
    *,
    k: int,
    cfg: GateConfig,
    session_id: str | None = None,
    tags: tuple[str, ...] = (),
) -> list[Scored]:
    """Ranked candidates of one kind with the gate's verdicts."""
    hits = index[kind].search(vec, query, k=k, session_id=session_id, tags=tags)
    return rank(hits, dense_mode=vec is not None, cfg=cfg, query=query)
