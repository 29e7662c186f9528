"""Capture of completed chats onto the learning stream (off unless a tenant or request asks).

Precedence: the request's ``hivemind.capture`` wins, then the tenant's ``capture`` switch
(``keys.tenant_settings``), then ``HIVEMIND_CAPTURE_DEFAULT``. Only chats that completed are
captured, and the write is durable (a transaction that waits for a replica where there is one).
"""

from __future__ import annotations

import logging
from typing import Any

from hivemind_common import keys
from hivemind_common.auth import Principal
from hivemind_common.errors import Forbidden
from hivemind_common.jobs import ChatMessage, LearningSample
from hivemind_gateway.learning import budget
from hivemind_gateway.openai.metrics import CAPTURED

log = logging.getLogger(__name__)

_TRUE = frozenset({"1", "true", "yes", "on"})


def check_capture_allowed(principal: Principal, requested: bool | None) -> None:
    """A read-only key may not ask for capture (checked before any work)."""
    if requested and not principal.allows("write"):
        raise Forbidden(
            "capture writes to the learning stream and needs a 'write' key",
            param="hivemind.capture",
        )


async def capture_wanted(
    redis: Any, principal: Principal, requested: bool | None, default: bool
) -> bool:
    """Whether this chat is captured (request, then tenant switch, then the default)."""
    if requested is not None:
        check_capture_allowed(principal, requested)
        return requested
    raw = await redis.hget(keys.tenant_settings(principal.tenant), "capture")
    wanted = default if raw is None else str(raw).lower() in _TRUE
    # a tenant-wide switch does not turn read-only keys into writers: their chats stay out
    return wanted and principal.allows("write")


async def capture_chat(
    redis: Any,
    *,
    tenant: str,
    messages: list[dict[str, Any]],
    answer: dict[str, Any],
    model_version: str | None,
    retrieved: list[str],
    latency_ms: float,
    budget_bytes: int = 0,
    budget_samples: int = 0,
) -> str | None:
    """Append one completed chat to the learning stream; returns the sample id (None on error,
    or when the tenant's daily learning budget, ``budget_bytes`` or ``budget_samples``, is
    spent: the chat itself has been answered, so it is only left out of learning)."""
    reply = dict(answer)
    reply.setdefault("role", "assistant")
    sample = LearningSample(
        tenant=tenant,
        source="capture",
        messages=[ChatMessage.model_validate(m) for m in [*messages, reply]],
        model_version=model_version,
        retrieved=retrieved,
        latency_ms=round(latency_ms, 2),
    )
    fields = sample.to_fields()
    size = budget.stored_bytes(fields)
    try:
        if await budget.charge(redis, tenant, size, budget_bytes, budget_samples) is not None:
            log.info("capture skipped: tenant %s spent its learning budget for today", tenant)
            CAPTURED.labels("over_budget").inc()
            return None
        await redis.transaction(
            (
                "XADD",
                keys.learning_stream(),
                "MAXLEN",
                "~",
                str(keys.LEARNING_STREAM_MAXLEN),
                "*",
                *[x for kv in fields.items() for x in kv],
            ),
            durable=True,
        )
    except Exception as exc:  # the chat succeeded; losing its capture is logged, not raised
        log.warning("capture of a chat failed: %s", exc)
        CAPTURED.labels("failed").inc()
        return None
    CAPTURED.labels("ok").inc()
    return sample.id
