"""Gated hybrid retrieval: what (if anything) from a tenant's facts and memories reaches a prompt.

``retrieve_context`` is the one entry point the chat routes call. It embeds the query (falling
back to lexical evidence when the embedding service is away), scores facts and memories in the
tenant's in-memory index, lets through only what clears the gate (see ``rag.scoring``) plus facts
tagged ``pinned``, fits them into the token budget and logs the retrieval. It never raises for
an embedding outage.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from hivemind_gateway.rag.gate import embed_query, gate_config
from hivemind_gateway.rag.retrieval_log import log_retrieval
from hivemind_gateway.rag.schemas import Quality, RagContext, RagItem
from hivemind_gateway.rag.scoring import GateConfig, Scored, rank
from hivemind_gateway.search.index import Hit, TenantIndex
from hivemind_gateway.search.sync import SearchIndex

log = logging.getLogger(__name__)

HEADER = "Relevant facts and memories from Hive-Mind (use them if they help):"
CANDIDATES = 20


def estimate_tokens(text: str) -> int:
    """A cheap token estimate (about four characters a token, at least one a word)."""
    return max(len(text) // 4, len(text.split())) + 1


_LOGGING: set[asyncio.Task[None]] = set()  # log writes in flight (held so they finish)


def _line(hit: Hit) -> str:
    prefix = "" if hit.item.kind == "fact" else "(memory) "
    return f"- {prefix}{' '.join(hit.item.text.split())}"


def _fit(line: str, room: int, count: Callable[[str], int]) -> str | None:
    """``line`` cut to fit ``room`` tokens, or None when not even a stub fits."""
    if count(line) <= room:
        return line
    low, high = 0, len(line)
    while low < high:
        mid = (low + high + 1) // 2
        if count(line[:mid] + "…") <= room:
            low = mid
        else:
            high = mid - 1
    return line[:low] + "…" if low >= 16 else None


def assemble(
    pinned: list[tuple[Hit, float]],
    chosen: list[Scored],
    budget: int,
    count: Callable[[str], int],
) -> tuple[str, list[RagItem]]:
    """Pinned facts first, then gated items best first, while the budget lasts."""
    lines: list[str] = []
    items: list[RagItem] = []
    used = count(HEADER)
    entries = [(h, s, True) for h, s in pinned] + [(c.hit, c.score, False) for c in chosen]
    for hit, score, is_pinned in entries:
        room = budget - used
        line = _fit(_line(hit), room, count) if room > 0 else None
        if line is None:
            if is_pinned:
                continue
            break
        lines.append(line)
        used += count(line)
        items.append(
            RagItem(kind=hit.item.kind, key=hit.item.id, score=round(score, 4), pinned=is_pinned)  # type: ignore[arg-type]
        )
    if not lines:
        return "", []
    return "\n".join([HEADER, *lines]), items


@dataclass
class Selection:
    """The gate's decision for one query: what passed, what is pinned, how sure it was."""

    ranked: list[Scored]
    pinned: list[tuple[Hit, float]]
    chosen: list[Scored]
    dense_mode: bool

    def quality(self, injected: list[RagItem]) -> Quality:
        if not self.dense_mode:
            return "fallback"
        if any(not i.pinned for i in injected):
            return "good"
        if any(s.near for s in self.ranked):
            return "weak"
        return "miss"


Candidates = tuple[list[Hit], list[Hit]]


def candidates(
    index: TenantIndex, vec: np.ndarray | None, query: str, session_id: str | None = None
) -> Candidates:
    """The facts and memories worth scoring for ``query`` (independent of the gate)."""
    facts = index["fact"].search(vec, query, k=CANDIDATES)
    memories = index["memory"].search(vec, query, k=CANDIDATES, session_id=session_id)
    return facts, memories


def select(
    index: TenantIndex,
    vec: np.ndarray | None,
    query: str,
    *,
    cfg: GateConfig,
    session_id: str | None = None,
    found: Candidates | None = None,
) -> Selection:
    """Score facts and memories, apply the gate (margin across both kinds), add pinned facts.

    ``found`` reuses candidates already searched (a sweep over gate settings)."""
    facts_found, memories_found = found or candidates(index, vec, query, session_id)
    dense_mode = vec is not None
    ranked = rank(facts_found, dense_mode=dense_mode, cfg=cfg, query=query)
    ranked += rank(memories_found, dense_mode=dense_mode, cfg=cfg, query=query)
    ranked.sort(key=lambda s: s.score, reverse=True)
    if ranked:  # the margin is relative to the best item of either kind
        best = ranked[0].score
        for s in ranked:
            s.passes = s.passes and s.score >= best - cfg.margin
        if vec is not None and len(ranked) >= 2:
            top = ranked[0]
            if (
                top.near
                and (top.hit.dense or 0.0) >= cfg.distinct_min_dense
                and top.score - ranked[1].score >= cfg.distinct_gap
            ):
                top.passes = True
    facts = index["fact"]
    scores = {(s.hit.item.kind, s.hit.item.id): s.score for s in ranked}
    pinned = [
        (Hit(facts.items[key], None, 0.0, 0.0), scores.get(("fact", key), 0.0))
        for key in sorted(facts.pinned)
        if key in facts.items
    ]
    chosen = [s for s in ranked if s.passes and s.hit.item.id not in facts.pinned]
    return Selection(ranked, pinned, chosen[: cfg.max_items], vec is not None)


async def retrieve_context(
    state: Any,
    *,
    tenant: str,
    query: str,
    budget_tokens: int,
    count_tokens: Callable[[str], int] | None = None,
    session_id: str | None = None,
    log_later: bool = False,
) -> RagContext:
    """The block to inject for ``query``, the items in it and the gate's quality label.

    ``log_later`` writes the retrieval log after returning (a chat should not wait ~1 ms for
    its log line); the ``/v1/rag/context`` route logs before it answers.
    """
    search: SearchIndex = state.search
    index = await search.tenant(tenant)
    vec = await embed_query(search, query)
    chosen = select(index, vec, query, cfg=gate_config(state), session_id=session_id)
    text, items = assemble(
        chosen.pinned, chosen.chosen, budget_tokens, count_tokens or estimate_tokens
    )
    context = RagContext(
        text=text,
        items=items,
        quality=chosen.quality(items),
        method="hybrid" if vec is not None else "lexical",
    )
    top = chosen.ranked[0].score if chosen.ranked else 0.0
    logged = log_retrieval(
        state.redis,
        tenant=tenant,
        query=query,
        context=context,
        top_score=top,
        retention_s=state.settings.rag_log_retention_days * 86400,
    )
    if log_later:
        task = asyncio.create_task(logged)
        _LOGGING.add(task)
        task.add_done_callback(_LOGGING.discard)
    else:
        await logged
    return context
