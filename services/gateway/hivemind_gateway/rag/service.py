"""Gated hybrid retrieval: what (if anything) from a tenant's facts and memories reaches a prompt.

``retrieve_context`` is the one entry point the chat routes call. It embeds the query (falling
back to lexical evidence when the embedding service is away), scores facts and memories in the
tenant's in-memory index, lets through only what clears the gate (see ``rag.scoring``) plus facts
tagged ``pinned``, fits them into the token budget and logs the retrieval. It never raises for
an embedding outage.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hivemind_gateway.docs.service import score_docs
from hivemind_gateway.rag.gate import embed_query, gate_config
from hivemind_gateway.rag.retrieval_log import log_retrieval
from hivemind_gateway.rag.schemas import Quality, RagCandidate, RagContext, RagExplain, RagItem
from hivemind_gateway.rag.scoring import (
    GateConfig,
    Scored,
    definitions_first,
    fold_sections,
    rank,
)
from hivemind_gateway.search.index import Hit, TenantIndex, doc_filter
from hivemind_gateway.search.lexical import bounded_query, tokenize
from hivemind_gateway.search.sync import SearchIndex
from hivemind_gateway.state import GatewayState

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
            if s.passes and s.score < best - cfg.margin:
                s.passes = False
                s.reason += f", but more than margin {cfg.margin} below the best ({best:.3f})"
        if vec is not None and len(ranked) >= 2:
            top = ranked[0]
            lead = top.score - ranked[1].score
            if (
                not top.passes
                and top.near
                and (top.hit.dense or 0.0) >= cfg.distinct_min_dense
                and lead >= cfg.distinct_gap
            ):
                top.passes = True
                top.reason = (
                    f"the best candidate: fused {top.score:.3f} >= near_threshold "
                    f"{cfg.near_threshold} and it leads the runner-up by {lead:.3f} "
                    f">= distinct_gap {cfg.distinct_gap}"
                )
    facts = index["fact"]
    scores = {(s.hit.item.kind, s.hit.item.id): s.score for s in ranked}
    pinned = [
        (Hit(facts.items[key], None, 0.0, 0.0), scores.get(("fact", key), 0.0))
        for key in sorted(facts.pinned)
        if key in facts.items
    ]
    chosen = by_rank_within_kind(
        [s for s in ranked if s.passes and s.hit.item.id not in facts.pinned]
    )
    for s in chosen[cfg.max_items :]:
        s.reason += f", but past max_items {cfg.max_items}"
    return Selection(ranked, pinned, chosen[: cfg.max_items], vec is not None)


def by_rank_within_kind(passing: list[Scored]) -> list[Scored]:
    """Items the gate let through, in the order they are injected and cut at ``max_items``.

    The kinds keep the places their absolute scores give them (facts and memories are ranked
    in pools of their own, so their ranks do not compare), and within a kind the places go
    best ranked first: the session, time and date boosts order the memories injected, as they
    order a memory search."""
    queues: dict[str, list[tuple[float, int, Scored]]] = {}
    for place, s in enumerate(passing):
        queues.setdefault(s.hit.item.kind, []).append((s.rank, -place, s))
    for queue in queues.values():
        queue.sort(key=lambda t: (t[0], t[1]))  # best last (a tie: the higher score), popped first
    return [queues[s.hit.item.kind].pop()[2] for s in passing]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def explain(
    selection: Selection,
    items: list[RagItem],
    *,
    query: str,
    cfg: GateConfig,
    text: str,
    budget_tokens: int,
    count: Callable[[str], int],
    docs: tuple[list[Scored], list[Scored]] = ([], []),
) -> RagExplain:
    """Every candidate with its scores and the gate's verdict, and the exact injected text.

    ``docs`` is the reference library's (ranked, chosen) chunks; they follow the facts and
    memories."""
    injected = {(i.kind, i.key) for i in items}
    pinned = {(h.item.kind, h.item.id) for h, _ in selection.pinned}
    out: list[RagCandidate] = []
    seen: set[tuple[str, str]] = set()
    chosen = {id(c) for c in selection.chosen}
    for s in selection.ranked:
        item = s.hit.item
        ident = (item.kind, item.id)
        seen.add(ident)
        reason = s.reason
        if ident in pinned:
            reason = "pinned fact (tagged 'pinned'): injected whenever it fits"
        elif id(s) in chosen and ident not in injected:
            reason += ", but no room left in budget_tokens"
        out.append(_candidate(s.hit, s.score, s.rank, s.near, s.passes, ident, injected, reason))
    doc_chosen = {id(c) for c in docs[1]}
    for s in docs[0]:
        ident = (s.hit.item.kind, s.hit.item.id)
        reason = s.reason
        if id(s) in doc_chosen and ident not in injected:
            reason += ", but no room left in the reference library's share of budget_tokens"
        out.append(_candidate(s.hit, s.score, s.rank, s.near, s.passes, ident, injected, reason))
    for hit, score in selection.pinned:
        ident = (hit.item.kind, hit.item.id)
        if ident not in seen:
            reason = "pinned fact (tagged 'pinned'): injected whenever it fits"
            out.append(_candidate(hit, score, 0.0, False, True, ident, injected, reason))
    return RagExplain(
        query_terms=list(dict.fromkeys(tokenize(bounded_query(query)))),
        embedded=selection.dense_mode,
        gate={k: v for k, v in dataclasses.asdict(cfg).items() if isinstance(v, int | float)},
        candidates=out,
        injected_text=text,
        budget_tokens=budget_tokens,
        used_tokens=count(text) if text else 0,
    )


def _candidate(
    hit: Hit,
    score: float,
    rank_score: float,
    near: bool,
    passed: bool,
    ident: tuple[str, str],
    injected: set[tuple[str, str]],
    reason: str,
) -> RagCandidate:
    item = hit.item
    return RagCandidate(
        kind=item.kind,  # type: ignore[arg-type]
        key=item.id,
        text=item.text,
        dense=_round(hit.dense),
        lexical=round(hit.lexical, 4),
        coverage=round(hit.coverage, 4),
        fused=round(score, 4),
        rank=round(rank_score, 4),
        near=near,
        passed=passed,
        injected=ident in injected,
        pinned=item.kind == "fact" and "pinned" in item.tags,
        reason=reason,
    )


DOCS_HEADER = "Passages from the project's reference library (cite them as source:lines):"
DOC_ITEMS = 3


def rank_docs(
    index: TenantIndex,
    vec: np.ndarray | None,
    query: str,
    *,
    cfg: GateConfig,
    collections: list[str] | None = None,
    skip_collections: list[str] | None = None,
) -> list[Scored]:
    """Document chunk candidates with the gate's verdict on each, best ranked first."""
    if not index["doc"].items:
        return []
    where = doc_filter(collections, skip_collections)
    # a chunk after a passing one of its section is folded out of the passages
    ranked = fold_sections(score_docs(index, vec, query, k=CANDIDATES, cfg=cfg, where=where))
    return definitions_first(ranked, margin=cfg.margin)


def select_docs(
    index: TenantIndex,
    vec: np.ndarray | None,
    query: str,
    *,
    cfg: GateConfig,
    collections: list[str] | None = None,
    skip_collections: list[str] | None = None,
) -> list[Scored]:
    """Document chunks that clear the same gate as facts and memories, best first."""
    ranked = rank_docs(
        index, vec, query, cfg=cfg, collections=collections, skip_collections=skip_collections
    )
    return _passing_docs(ranked)


def _passing_docs(ranked: list[Scored]) -> list[Scored]:
    passing = [s for s in ranked if s.passes]
    for s in passing[DOC_ITEMS:]:
        s.reason += f", but past the {DOC_ITEMS} passages the reference library may add"
    return passing[:DOC_ITEMS]


def assemble_docs(
    chosen: list[Scored], budget: int, count: Callable[[str], int]
) -> tuple[str, list[RagItem]]:
    """Passages, each headed by its ``source:lines`` citation, while the docs' share lasts."""
    parts: list[str] = []
    items: list[RagItem] = []
    used = count(DOCS_HEADER)
    for s in chosen:
        ref = s.hit.item.doc
        if ref is None:
            continue
        lines = f"{ref.start_line}-{ref.end_line}" if ref.end_line != ref.start_line else ""
        cite = f"{ref.source}:{lines or ref.start_line}"
        head = f"[{cite}]" + (f" {ref.heading}" if ref.heading else "")
        room = budget - used
        passage = _fit(f"{head}\n{s.hit.item.text}", room, count) if room > 0 else None
        if passage is None:
            break
        parts.append(passage)
        used += count(passage)
        items.append(RagItem(kind="doc", key=s.hit.item.id, score=round(s.score, 4)))
    if not parts:
        return "", []
    return "\n\n".join([DOCS_HEADER, *parts]), items


async def retrieve_context(
    state: GatewayState,
    *,
    tenant: str,
    query: str,
    budget_tokens: int,
    count_tokens: Callable[[str], int] | None = None,
    session_id: str | None = None,
    log_later: bool = False,
    with_explain: bool = False,
    collections: list[str] | None = None,
    skip_collections: list[str] | None = None,
    record: bool = True,
) -> RagContext:
    """The block to inject for ``query``, the items in it and the gate's quality label.

    ``log_later`` writes the retrieval log after returning (a chat should not wait ~1 ms for
    its log line); the ``/v1/rag/context`` route logs before it answers; ``record=False`` writes
    none (a token count sizing a request, which is not a retrieval anyone asked for).
    ``with_explain`` adds every candidate with its scores and the gate's reasons (the
    console's playground).

    Document chunks (the reference library) pass the same gate and take at most their share of
    the budget (``rag_docs_share``); facts and memories get the rest. ``collections`` limits them
    to some collections, ``skip_collections`` leaves some out.
    """
    search: SearchIndex = state.search
    index = await search.tenant(tenant)
    vec = await embed_query(search, query, tenant=tenant)
    cfg = gate_config(state)
    count = count_tokens or estimate_tokens
    chosen = select(index, vec, query, cfg=cfg, session_id=session_id)
    share = float(getattr(state.settings, "rag_docs_share", 0.0))
    doc_ranked = (
        rank_docs(
            index, vec, query, cfg=cfg, collections=collections, skip_collections=skip_collections
        )
        if share > 0
        else []
    )
    docs = _passing_docs(doc_ranked)
    doc_text, doc_items = assemble_docs(docs, int(budget_tokens * share), count)
    main_budget = budget_tokens - (count(doc_text) + 1 if doc_text else 0)
    text, items = assemble(chosen.pinned, chosen.chosen, main_budget, count)
    text = "\n\n".join(t for t in (text, doc_text) if t)
    items = items + doc_items
    context = RagContext(
        text=text,
        items=items,
        quality=chosen.quality(items),
        method="hybrid" if vec is not None else "lexical",
    )
    if with_explain:
        context.explain = explain(
            chosen,
            items,
            query=query,
            cfg=cfg,
            text=text,
            budget_tokens=budget_tokens,
            count=count,
            docs=(doc_ranked, docs),
        )
    if not record:
        return context
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
