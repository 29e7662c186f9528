"""Sections of ``GET /v1/stats``: each surface registers a coroutine that reports its numbers.

To add a field, decorate ``async def f(state, principal) -> dict`` with ``@stats_section("name")``
in your module and import that module from ``stats/router.py``. A failing section reports its
error instead of failing the whole answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from hivemind_common import keys
from hivemind_common.auth import Principal
from hivemind_gateway.rag.retrieval_log import read_counters
from hivemind_gateway.state import GatewayState

Section = Callable[[Any, Principal], Awaitable[dict[str, Any]]]
SECTIONS: dict[str, Section] = {}


def stats_section(name: str) -> Callable[[Section], Section]:
    def register(fn: Section) -> Section:
        SECTIONS[name] = fn
        return fn

    return register


@stats_section("memory")
async def memory_stats(state: GatewayState, principal: Principal) -> dict[str, Any]:
    """Stored facts, memories and live sessions of the caller's tenant."""
    tenant = principal.tenant
    async with state.redis.pipeline(transaction=False) as pipe:
        pipe.zcard(keys.facts_index(tenant))
        pipe.zcard(keys.memories_index(tenant))
        pipe.zcard(keys.sessions_recent(tenant))
        facts, memories, sessions = await pipe.execute()
    return {"facts": int(facts), "memories": int(memories), "recent_sessions": int(sessions)}


@stats_section("rag")
async def rag_stats(state: GatewayState, principal: Principal) -> dict[str, Any]:
    """Retrievals per quality and method, and the in-memory index."""
    counters, logged = await read_counters(state.redis, principal.tenant)
    index = await state.search.tenant(principal.tenant)
    return {
        "counters": counters,
        "logged": logged,
        "index": index.sizes(),
        "embedding_model": state.search.embedder.model_id,
        "embedding_available": state.search.embedder.available,
    }
