"""The chat and text completion pipelines: route, inject, look up the cache, call, capture."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from fastapi.responses import Response, StreamingResponse

from hivemind_common.auth import Principal
from hivemind_common.partition import PARTITION_HEADER, partition_of
from hivemind_common.streams import ClosingStream
from hivemind_gateway.openai import respcache
from hivemind_gateway.openai.capture import (
    capture_chat,
    capture_wanted,
    check_capture_allowed,
)
from hivemind_gateway.openai.injection import Injected, inject_retrieval
from hivemind_gateway.openai.metrics import CHAT_REQUESTS, RESPONSE_CACHE, RETRIEVAL_SECONDS
from hivemind_gateway.openai.served import ServedModels, served_version
from hivemind_gateway.openai.streaming import (
    Gathered,
    relay,
    relay_data,
    replay,
    replay_data,
    sse_frames,
)
from hivemind_gateway.openai.upstream import VERSION_HEADER, open_stream, parse_json, post_raw
from hivemind_gateway.state import GatewayState

CACHE_HEADER = "x-hivemind-cache"
RAG_HEADER = "x-hivemind-rag-items"
SSE = "text/event-stream"
JSON = "application/json"
CHARS_PER_TOKEN = 3  # a safe over-estimate of prompt tokens, to size the retrieval budget
T = TypeVar("T")


@dataclass
class Plan:
    """What one request will do, decided before the upstream call."""

    payload: dict[str, Any]
    model: str
    capture: bool
    retrieved: list[str]
    digest: str | None
    version: str | None
    # the caller's own messages, before retrieval injected anything: what capture may keep
    own_messages: list[dict[str, Any]] | None = None


def prompt_chars(messages: list[dict[str, Any]]) -> int:
    """Characters of a chat's text: what routing and the retrieval budget size it by."""
    total = 0
    for m in messages:
        content = m.get("content")
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            total += sum(len(str(p.get("text", ""))) for p in content if isinstance(p, dict))
    return total


def _headers(version: str | None, cache: str, model: str, rag: int | None = None) -> dict[str, str]:
    out = {CACHE_HEADER: cache, "x-hivemind-model": model}
    if version:
        out[VERSION_HEADER] = version
    if rag is not None:
        out[RAG_HEADER] = str(rag)
    return out


async def _alongside(main: Awaitable[T], *side: Awaitable[Any]) -> tuple[T, list[Any]]:
    """Await ``main`` while the ``side`` calls run; a failure cancels whatever is left."""
    tasks = [asyncio.ensure_future(s) for s in side]
    try:
        result = await main
        return result, [await t for t in tasks]
    finally:
        for task in tasks:
            task.cancel()  # a no-op for the finished ones


async def _version_for_cache(
    state: GatewayState, payload: dict[str, Any], model: str
) -> str | None:
    """The served version a deterministic request is cached under (None: do not cache)."""
    if not respcache.is_deterministic(payload):
        return None
    return await served_version(state.redis, state.inference_http, model)


async def _cache_lookup(
    state: GatewayState,
    tenant: str,
    payload: dict[str, Any],
    model: str,
    kind: str,
    version: str | None,
) -> tuple[str | None, str | None]:
    """(digest, cached answer) under ``version``; Nones when the request is not cached."""
    if version is None:  # not deterministic, or unknown or mid-swap: trust no cached answer
        return None, None
    digest = respcache.cache_digest(payload, model=model, version=version, kind=kind)
    return digest, await respcache.cache_get(state.redis, tenant, digest)


async def _after_answer(
    state: GatewayState,
    principal: Principal,
    plan: Plan,
    answer: dict[str, Any],
    *,
    kind: str,
    version: str | None,
    started: float,
    raw: bytes | None = None,
) -> None:
    """Store a deterministic answer under the version that made it; capture the chat."""
    settings = state.settings
    if plan.digest is not None and version:
        digest = plan.digest
        if version != plan.version:  # a swap happened in between: key on who answered
            digest = respcache.cache_digest(
                plan.payload, model=plan.model, version=version, kind=kind
            )
        await respcache.cache_put(
            state.redis,
            principal.tenant,
            digest,
            raw if raw is not None else answer,
            ttl_s=settings.response_cache_ttl_s,
        )
    # only the caller's own messages are ever captured, never the injected prompt
    if plan.capture and kind == "chat" and plan.own_messages:
        choice = (answer.get("choices") or [{}])[0]
        messages, answer = plan.own_messages, dict(choice.get("message") or {})
        if plan.payload.get("continue_final_message") and messages:
            # a prefill and what went on from it are one assistant turn, not two
            *messages, prefill = messages
            answer["content"] = f"{prefill.get('content') or ''}{answer.get('content') or ''}"
        await capture_chat(
            state.redis,
            tenant=principal.tenant,
            messages=messages,
            answer=answer,
            model_version=version,
            retrieved=plan.retrieved,
            latency_ms=(time.perf_counter() - started) * 1000,
            budget_bytes=state.settings.learning_mb_per_tenant_day * 2**20,
            budget_samples=state.settings.learning_samples_per_tenant_day,
        )


def _partition(principal: Principal) -> dict[str, str]:
    """The header that keeps the caller's prompt states apart from other tenants' in inference
    (hivemind_common.partition)."""
    return {PARTITION_HEADER: partition_of(principal.tenant)}


async def _answer_whole(
    state: GatewayState, principal: Principal, plan: Plan, *, path: str, kind: str, started: float
) -> tuple[bytes, str | None]:
    """Call inference; the answer goes back as the bytes it came in (parsed only if needed)."""
    raw, up_headers = await post_raw(
        state.inference_http, "inference", path, plan.payload, _partition(principal)
    )
    answered_by = up_headers.get(VERSION_HEADER)
    if plan.digest is not None or plan.capture:
        answer = parse_json("inference", raw)
        await _after_answer(
            state, principal, plan, answer, kind=kind, version=answered_by, started=started, raw=raw
        )
    return raw, answered_by


async def _nothing() -> None:
    return None


@dataclass
class ChatOutcome:
    """What the chat pipeline answered: a whole chat completion, or a stream of its chunks.

    ``raw`` is the whole answer as inference sent it (bytes, parsed only by who needs to);
    ``stream`` yields each chunk's JSON (an ``{"error": ...}`` object when the stream failed)
    and no ``[DONE]``: every wire format frames and ends its stream its own way.
    """

    headers: dict[str, str]
    model: str
    raw: bytes | None = None
    stream: AsyncIterator[bytes] | None = None
    close: Callable[[], Awaitable[None]] = field(default=lambda: _nothing())

    def answer(self) -> dict[str, Any]:
        assert self.raw is not None
        return parse_json("inference", self.raw)


async def chat_completion(
    state: GatewayState, principal: Principal, payload: dict[str, Any]
) -> Response:
    """``POST /v1/chat/completions``: the chat pipeline, in OpenAI's wire format."""
    out = await run_chat(state, principal, payload, api="chat")
    if out.stream is None:
        return Response(out.raw, media_type=JSON, headers=out.headers)
    return ClosingStream(
        sse_frames(out.stream), media_type=SSE, headers=out.headers, on_close=out.close
    )


async def run_chat(
    state: GatewayState, principal: Principal, payload: dict[str, Any], *, api: str
) -> ChatOutcome:
    """The one chat pipeline behind every wire format: route, inject, cache, call, capture.

    ``payload`` is a chat completions body (the internal request); ``api`` names the wire
    format it came in (for metrics).
    """
    CHAT_REQUESTS.labels(api, "stream" if payload.get("stream") else "whole").inc()
    started = time.perf_counter()
    settings = state.settings
    served: ServedModels = state.served_models
    opts = payload.pop("hivemind", None) or {}
    chars = prompt_chars(payload["messages"])
    card = await served.resolve(payload["model"], prompt_chars=chars, task=opts.get("task"))
    model = payload["model"] = card["id"]
    check_capture_allowed(principal, opts.get("capture"))

    def wants_capture() -> Awaitable[bool]:
        return capture_wanted(state.redis, principal, opts.get("capture"), settings.capture_default)

    rag_on = rag_wanted(state, opts)
    own_messages = payload["messages"]  # injection copies; this list is never changed
    retrieved: list[str] = []
    capture: bool | None = None
    if rag_on:
        budget = rag_budget(state, card, payload, chars)
        # the served version and the tenant's capture switch are read while retrieval runs
        with RETRIEVAL_SECONDS.time():
            injected, (version, capture) = await _alongside(
                _retrieve(state, principal, payload, model, budget, opts),
                _version_for_cache(state, payload, model),
                wants_capture(),
            )
        payload["messages"], retrieved = injected.messages, injected.item_ids
    else:
        version = await _version_for_cache(state, payload, model)
    digest, hit = await _cache_lookup(state, principal.tenant, payload, model, "chat", version)
    RESPONSE_CACHE.labels("chat", "hit" if hit else "miss" if digest else "bypass").inc()
    rag_count = len(retrieved) if rag_on else None
    if hit is not None:  # an answer from the cache is not a new sample: no capture
        headers = _headers(version, "hit", model, rag_count)
        if payload.get("stream"):
            usage = bool((payload.get("stream_options") or {}).get("include_usage"))
            chunks = respcache.replay_chunks(orjson.loads(hit), include_usage=usage)
            return ChatOutcome(headers, model, stream=replay_data(chunks))
        return ChatOutcome(headers, model, raw=hit.encode() if isinstance(hit, str) else hit)
    if capture is None:
        capture = await wants_capture()
    plan = Plan(payload, model, capture, retrieved, digest, version, own_messages)
    cache_state = "miss" if digest else "bypass"
    if not payload.get("stream"):
        raw, answered_by = await _answer_whole(
            state, principal, plan, path="/v1/chat/completions", kind="chat", started=started
        )
        return ChatOutcome(_headers(answered_by, cache_state, model, rag_count), model, raw=raw)
    # usage is always asked of inference, so that a cached stream has it for whoever asks
    # later; a caller that did not ask is not sent the usage chunk
    options = payload.get("stream_options") or {}
    hide_usage = not options.get("include_usage")
    upstream = {**payload, "stream_options": {**options, "include_usage": True}}
    resp = await open_stream(
        state.inference_http, "inference", "/v1/chat/completions", upstream, _partition(principal)
    )
    answered_by = resp.headers.get(VERSION_HEADER)
    need = digest is not None or capture

    async def finish(g: Gathered) -> None:
        await _after_answer(
            state, principal, plan, g.response(), kind="chat", version=answered_by, started=started
        )

    return ChatOutcome(
        _headers(answered_by, cache_state, model, rag_count),
        model,
        stream=relay_data(
            resp,
            gathered=Gathered(chat=True) if need else None,
            on_complete=finish,
            hide_usage=hide_usage,
        ),
        close=resp.aclose,
    )


def rag_budget(
    state: GatewayState, card: dict[str, Any], payload: dict[str, Any], chars: int
) -> int:
    """Tokens retrieval may add to a chat of ``chars`` characters on the model of ``card``."""
    n_ctx = int(card.get("n_ctx", 2048))
    # the answer's reserve: agents ask for far more than they use (Claude Code sends 32000),
    # and inference clips max_tokens to the room left, so at most a quarter of the window
    wanted = payload.get("max_completion_tokens") or payload.get("max_tokens") or 256
    room = n_ctx - chars // CHARS_PER_TOKEN - min(int(wanted), n_ctx // 4)
    return min(state.settings.rag_budget_tokens, room)


def rag_wanted(state: GatewayState, opts: dict[str, Any]) -> bool:
    """Whether a chat gets retrieval: on in the settings, not turned off by the request."""
    return bool(state.settings.rag_enabled) and opts.get("rag") is not False


async def _retrieve(
    state: GatewayState,
    principal: Principal,
    payload: dict[str, Any],
    model: str,
    budget_tokens: int,
    opts: dict[str, Any],
    *,
    record: bool = True,
) -> Injected:
    return await inject_retrieval(
        state,
        tenant=principal.tenant,
        model=model,
        messages=payload["messages"],
        budget_tokens=budget_tokens,
        session_id=opts.get("session_id"),
        collections=opts.get("collections"),
        skip_collections=opts.get("skip_collections"),
        record=record,
    )


async def with_retrieval(
    state: GatewayState,
    principal: Principal,
    payload: dict[str, Any],
    card: dict[str, Any],
    chars: int,
) -> list[dict[str, Any]]:
    """The messages as a chat of ``payload`` would send them, retrieval injected, without a
    retrieval log line: what a token count must count (it counted the caller's own only)."""
    opts = payload.get("hivemind") or {}
    if not rag_wanted(state, opts):
        return list(payload["messages"])
    budget = rag_budget(state, card, payload, chars)
    injected = await _retrieve(state, principal, payload, card["id"], budget, opts, record=False)
    return injected.messages


async def text_completion(
    state: GatewayState, principal: Principal, payload: dict[str, Any]
) -> Response:
    """``POST /v1/completions`` (``suffix`` for fill-in-the-middle) through the cache."""
    started = time.perf_counter()
    served: ServedModels = state.served_models
    opts = payload.pop("hivemind", None) or {}
    prompt = payload.get("prompt")
    chars = len(prompt) if isinstance(prompt, str) else 0
    card = await served.resolve(payload["model"], prompt_chars=chars, task=opts.get("task"))
    model = payload["model"] = card["id"]
    version = await _version_for_cache(state, payload, model)
    digest, hit = await _cache_lookup(state, principal.tenant, payload, model, "text", version)
    RESPONSE_CACHE.labels("text", "hit" if hit else "miss" if digest else "bypass").inc()
    if hit is not None:
        headers = _headers(version, "hit", model)
        if payload.get("stream"):
            chunks = respcache.replay_text_chunks(orjson.loads(hit))
            return StreamingResponse(replay(chunks), media_type=SSE, headers=headers)
        return Response(hit, media_type=JSON, headers=headers)
    plan = Plan(payload, model, False, [], digest, version)
    cache_state = "miss" if digest else "bypass"
    if not payload.get("stream"):
        raw, answered_by = await _answer_whole(
            state, principal, plan, path="/v1/completions", kind="text", started=started
        )
        return Response(raw, media_type=JSON, headers=_headers(answered_by, cache_state, model))
    resp = await open_stream(
        state.inference_http, "inference", "/v1/completions", payload, _partition(principal)
    )
    answered_by = resp.headers.get(VERSION_HEADER)

    async def finish(g: Gathered) -> None:
        await _after_answer(
            state, principal, plan, g.response(), kind="text", version=answered_by, started=started
        )

    return ClosingStream(
        relay(resp, gathered=Gathered(chat=False) if digest else None, on_complete=finish),
        media_type="text/event-stream",
        headers=_headers(answered_by, cache_state, model),
        on_close=resp.aclose,
    )
