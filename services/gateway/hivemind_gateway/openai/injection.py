"""Retrieval injected into a chat's system prompt, under a token budget.

Retrieval is the memory area's ``retrieve_context``. Tokens are counted for the served model: a
characters-per-token ratio is calibrated once per model against its own tokenizer (inference
``/tokenize``) and padded by 15%; a block estimated above 60% of the budget is then counted
exactly by that tokenizer and left out if it does not fit. A retrieval failure never fails the
chat.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from hivemind_gateway.openai.upstream import post_json
from hivemind_gateway.rag.service import retrieve_context
from hivemind_gateway.state import GatewayState

log = logging.getLogger(__name__)

RAG_HEADER = "Relevant context from memory (facts and past notes):"


@dataclass
class Injected:
    messages: list[dict[str, Any]]
    item_ids: list[str] = field(default_factory=list)
    quality: str | None = None


def last_user_text(messages: list[dict[str, Any]]) -> str:
    """The text of the last user message (text parts joined)."""
    for msg in reversed(messages):
        if msg.get("role") != "user":
            continue
        content = msg.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return "\n".join(
                str(p.get("text", "")) for p in content if isinstance(p, dict) and "text" in p
            )
    return ""


def with_system_text(messages: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """Append ``text`` to the first system message, or add one at the front.

    Appended, not prepended: the caller's own system prompt (an agent's is thousands of tokens)
    stays the head of the prompt from turn to turn, so the model server can reuse its KV state.
    """
    out = [dict(m) for m in messages]
    for msg in out:
        if msg.get("role") in ("system", "developer"):
            content = msg.get("content")
            if isinstance(content, list):
                msg["content"] = [*content, {"type": "text", "text": text}]
            else:
                msg["content"] = f"{content or ''}\n\n{text}".lstrip()
            return out
    return [{"role": "system", "content": text}, *out]


# English prose, a fact line and code: what retrieved blocks look like, to calibrate against.
_CALIBRATION_TEXT = (
    "- The deploy target for project atlas is the staging cluster in eu-west; "
    "(memory) we agreed to pin numpy<2 because the HNSW wheels break.\n"
    "def retry(fn, attempts=3):\n    for i in range(attempts):\n        return fn()\n"
)
_SAFETY = 1.15  # count a little high: the block must fit the budget, not merely come close
VERIFY_ABOVE = 0.6  # blocks estimated above this share of the budget are counted exactly


async def served_token_count(client: httpx.AsyncClient, model: str, text: str) -> int:
    """Tokens of ``text`` by the served model's own tokenizer (inference /tokenize)."""
    data, _ = await post_json(client, "inference", "/tokenize", {"model": model, "content": text})
    return int(data["count"])


async def token_counter(state: GatewayState, model: str) -> Callable[[str], int]:
    """A fast synchronous counter calibrated once per model against its real tokenizer."""
    ratios: dict[str, float] | None = getattr(state, "token_ratios", None)
    if ratios is None:
        ratios = {}
        state.token_ratios = ratios
    if model not in ratios:
        count = await served_token_count(state.inference_http, model, _CALIBRATION_TEXT)
        ratios[model] = len(_CALIBRATION_TEXT) / max(1, count)
    chars_per_token = ratios[model]

    def count_tokens(text: str) -> int:
        return math.ceil(len(text) / chars_per_token * _SAFETY) + 1

    return count_tokens


async def inject_retrieval(
    state: GatewayState,
    *,
    tenant: str,
    model: str,
    messages: list[dict[str, Any]],
    budget_tokens: int,
    session_id: str | None,
    collections: list[str] | None = None,
    skip_collections: list[str] | None = None,
    record: bool = True,
) -> Injected:
    """Messages with retrieved context in the system prompt; unchanged when nothing fits
    (``record=False``: no retrieval log line, for a token count)."""
    query = last_user_text(messages)
    if not query.strip() or budget_tokens <= 0:
        return Injected(messages)
    try:
        count = await token_counter(state, model)
        ctx = await retrieve_context(
            state,
            tenant=tenant,
            query=query,
            budget_tokens=budget_tokens,
            count_tokens=count,
            session_id=session_id,
            log_later=True,
            collections=collections,
            skip_collections=skip_collections,
            record=record,
        )
        if ctx.text.strip() and count(ctx.text) > VERIFY_ABOVE * budget_tokens:
            # near the budget the calibrated estimate is not enough: ask the real tokenizer
            real = await served_token_count(state.inference_http, model, ctx.text)
            if real > budget_tokens:
                log.info("retrieved block is %d tokens > budget %d: left out", real, budget_tokens)
                return Injected(messages, quality=ctx.quality)
    except Exception as exc:  # retrieval is a bonus: the chat goes on without it
        log.warning("retrieval failed, chat continues without it: %s", exc)
        return Injected(messages)
    if not ctx.text.strip():
        return Injected(messages, quality=ctx.quality)
    ids = [f"{it.kind}:{it.key}" for it in ctx.items]
    text = f"{RAG_HEADER}\n{ctx.text}"
    return Injected(with_system_text(messages, text), ids, ctx.quality)
