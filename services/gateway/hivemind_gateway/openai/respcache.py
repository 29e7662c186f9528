"""The response cache: deterministic chats only, keyed on everything that shapes the answer.

A request is cacheable when its temperature is 0 or it carries a ``seed``. The key digests the
served model's name and *version*, the final messages (after retrieval was injected) and every
other field of the body. A swap changes the version, so an answer from an older model is never
served. Cached answers replay as a stream when the request streams.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from typing import Any

from hivemind_common import keys
from hivemind_common.json_codec import dumps

log = logging.getLogger(__name__)

_NOT_IN_KEY = frozenset({"stream", "stream_options", "user", "hivemind", "model"})


def is_deterministic(body: dict[str, Any]) -> bool:
    """Temperature 0 or a seed, and one choice."""
    if (body.get("n") or 1) != 1:
        return False
    return body.get("temperature") == 0 or body.get("seed") is not None


def cache_digest(body: dict[str, Any], *, model: str, version: str, kind: str) -> str:
    """SHA-256 over the model, its version and every field that shapes the answer."""
    fields = {k: v for k, v in body.items() if k not in _NOT_IN_KEY}
    material = dumps(
        {"kind": kind, "model": model, "version": version, "body": fields}, sort_keys=True
    )
    return hashlib.sha256(material).hexdigest()


async def cache_get(redis: Any, tenant: str, digest: str) -> str | None:
    """The stored answer as JSON text (served as it is, without a parse), or None."""
    raw = await redis.get(keys.response_cache(tenant, digest))
    return str(raw) if raw else None


async def cache_put(
    redis: Any, tenant: str, digest: str, response: dict[str, Any] | bytes, *, ttl_s: int
) -> None:
    """Store an answer (a dict, or the JSON bytes it arrived as) for ``ttl_s`` seconds."""
    value = response if isinstance(response, bytes) else dumps(response)
    try:
        await redis.set(keys.response_cache(tenant, digest), value, ex=ttl_s)
    except Exception as exc:  # a cache that cannot write only costs speed
        log.warning("response cache write failed: %s", exc)


def replay_chunks(
    response: dict[str, Any], *, include_usage: bool = False
) -> Iterator[dict[str, Any]]:
    """A stored chat completion as the chunks a stream would have sent."""
    base = {
        "id": response.get("id"),
        "object": "chat.completion.chunk",
        "created": response.get("created"),
        "model": response.get("model"),
        "system_fingerprint": response.get("system_fingerprint"),
    }
    for choice in response.get("choices", []):
        message = choice.get("message") or {}
        delta: dict[str, Any] = {"role": message.get("role", "assistant")}
        if message.get("reasoning_content"):
            delta["reasoning_content"] = message["reasoning_content"]
        if message.get("content") is not None:
            delta["content"] = message["content"]
        if message.get("tool_calls"):
            delta["tool_calls"] = [
                {**call, "index": i} for i, call in enumerate(message["tool_calls"])
            ]
        index = choice.get("index", 0)
        first = {"index": index, "delta": delta, "logprobs": choice.get("logprobs")}
        yield {**base, "choices": [{**first, "finish_reason": None}]}
        done = {"index": index, "delta": {}, "finish_reason": choice.get("finish_reason")}
        if choice.get("stop_reason"):
            done["stop_reason"] = choice["stop_reason"]
        yield {**base, "choices": [done]}
    if include_usage and response.get("usage"):
        yield {**base, "choices": [], "usage": response["usage"]}


def replay_text_chunks(response: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A stored text completion as one chunk per choice."""
    for choice in response.get("choices", []):
        yield {**response, "choices": [choice]}
