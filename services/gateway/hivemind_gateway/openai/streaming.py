"""SSE relay: pass an upstream stream through, gather what it said, always end with [DONE]."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from hivemind_common.error_handlers import openai_error_body
from hivemind_common.errors import HivemindError
from hivemind_gateway.openai.upstream import dumps, transport_error

log = logging.getLogger(__name__)

DONE = b"data: [DONE]\n\n"


def sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + dumps(obj) + b"\n\n"


def error_frame(exc: HivemindError) -> bytes:
    return sse(openai_error_body(exc.status, exc.message, code=exc.code, param=exc.param))


@dataclass
class Gathered:
    """A streamed chat (or text) completion put back together."""

    chat: bool
    head: dict[str, Any] = field(default_factory=dict)
    choices: dict[int, dict[str, Any]] = field(default_factory=dict)
    usage: dict[str, Any] | None = None
    failed: bool = False

    def add(self, chunk: dict[str, Any]) -> None:
        if "error" in chunk:
            self.failed = True
            return
        if not self.head:
            self.head = {k: chunk.get(k) for k in ("id", "created", "model", "system_fingerprint")}
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for ch in chunk.get("choices") or []:
            slot = self.choices.setdefault(
                ch.get("index", 0),
                {"content": "", "tool_calls": {}, "finish_reason": None, "logprobs": None,
                 "reasoning": ""},
            )  # fmt: skip
            part = ch.get("delta", {}) if self.chat else ch
            slot["content"] += (part.get("content") if self.chat else part.get("text")) or ""
            if self.chat:
                slot["reasoning"] += part.get("reasoning_content") or ""
            for call in part.get("tool_calls") or []:
                into = slot["tool_calls"].setdefault(
                    call.get("index", 0),
                    {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
                )
                into["id"] = call.get("id") or into["id"]
                fn = call.get("function") or {}
                into["function"]["name"] += fn.get("name") or ""
                into["function"]["arguments"] += fn.get("arguments") or ""
            if ch.get("logprobs"):
                slot["logprobs"] = _merge_logprobs(slot["logprobs"], ch["logprobs"])
            if ch.get("finish_reason"):
                slot["finish_reason"] = ch["finish_reason"]
            if ch.get("stop_reason"):
                slot["stop_reason"] = ch["stop_reason"]

    @property
    def complete(self) -> bool:
        return (
            not self.failed
            and bool(self.choices)
            and all(c["finish_reason"] for c in self.choices.values())
        )

    def message(self, index: int = 0) -> dict[str, Any]:
        slot = self.choices.get(index, {"content": "", "tool_calls": {}})
        msg: dict[str, Any] = {"role": "assistant", "content": slot["content"] or None}
        if slot.get("reasoning"):
            msg["reasoning_content"] = slot["reasoning"]
        if slot["tool_calls"]:
            msg["tool_calls"] = [slot["tool_calls"][i] for i in sorted(slot["tool_calls"])]
        return msg

    def response(self) -> dict[str, Any]:
        """The non-stream shape of what was streamed."""
        choices = []
        for index in sorted(self.choices):
            slot = self.choices[index]
            if self.chat:
                choices.append(
                    {
                        "index": index,
                        "message": self.message(index),
                        "logprobs": slot.get("logprobs"),
                        "finish_reason": slot["finish_reason"],
                        **({"stop_reason": slot["stop_reason"]} if slot.get("stop_reason") else {}),
                    }
                )
            else:
                choices.append(
                    {
                        "index": index,
                        "text": slot["content"],
                        "logprobs": slot.get("logprobs"),
                        "finish_reason": slot["finish_reason"],
                    }
                )
        obj = "chat.completion" if self.chat else "text_completion"
        return {**self.head, "object": obj, "choices": choices, "usage": self.usage}


def _merge_logprobs(into: dict[str, Any] | None, part: dict[str, Any]) -> dict[str, Any]:
    """Append one chunk's logprobs (chat ``content`` list, or the legacy parallel lists)."""
    if into is None:
        into = {}
    for key, value in part.items():
        if isinstance(value, list):
            into[key] = [*(into.get(key) or []), *value]
        else:
            into.setdefault(key, value)
    return into


async def _data_lines(resp: httpx.Response) -> AsyncIterator[bytes]:
    """The ``data:`` payloads of an SSE body, as bytes (no decode and re-encode per token)."""
    buffer = b""
    async for piece in resp.aiter_bytes():
        buffer += piece
        while (cut := buffer.find(b"\n")) >= 0:
            line, buffer = buffer[:cut], buffer[cut + 1 :]
            if line.startswith(b"data:"):
                yield line[5:].strip()


async def relay_data(
    resp: httpx.Response,
    *,
    gathered: Gathered | None,
    on_complete: Callable[[Gathered], Awaitable[None]] | None = None,
    hide_usage: bool = False,
) -> AsyncIterator[bytes]:
    """The upstream's SSE ``data`` payloads (JSON bytes, an error object on failure), gathered
    when asked; ``[DONE]`` is not passed on: each wire format ends its stream its own way.
    ``hide_usage``: the usage-only chunk is gathered but not passed on (the caller did not
    ask for it; the gateway did, for the cache)."""
    try:
        async for data in _data_lines(resp):
            if data == b"[DONE]":
                break
            chunk: Any = None
            if gathered is not None or (hide_usage and b'"usage"' in data):
                try:
                    chunk = orjson.loads(data)
                except orjson.JSONDecodeError:
                    if gathered is not None:
                        gathered.failed = True
            if gathered is not None and chunk is not None:
                gathered.add(chunk)
            if (
                hide_usage
                and isinstance(chunk, dict)
                and chunk.get("usage")
                and not chunk.get("choices")
            ):
                continue
            yield data
        else:
            if gathered is not None:
                gathered.failed = True  # the upstream ended without [DONE]
    except httpx.HTTPError as exc:
        if gathered is not None:
            gathered.failed = True
        err = transport_error("inference", exc)
        yield dumps(openai_error_body(err.status, err.message, code=err.code, param=err.param))
    finally:
        await resp.aclose()
    if gathered is not None and on_complete is not None and gathered.complete:
        try:
            await on_complete(gathered)
        except Exception as exc:
            log.warning("after-stream work failed: %s", exc)


async def sse_frames(payloads: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """OpenAI's framing: ``data: <json>`` events and exactly one ``[DONE]`` at the end."""
    async for data in payloads:
        yield b"data: " + data + b"\n\n"
    yield DONE


def relay(
    resp: httpx.Response,
    *,
    gathered: Gathered | None,
    on_complete: Callable[[Gathered], Awaitable[None]] | None = None,
) -> AsyncIterator[bytes]:
    """Yield the upstream SSE events; gather them when asked; end with exactly one [DONE]."""
    return sse_frames(relay_data(resp, gathered=gathered, on_complete=on_complete))


async def replay_data(chunks: Iterable[dict[str, Any]]) -> AsyncIterator[bytes]:
    """A cached answer's chunks as stream payloads."""
    for chunk in chunks:
        yield dumps(chunk)


async def replay(chunks: Iterable[dict[str, Any]]) -> AsyncIterator[bytes]:
    """A cached answer as a stream."""
    for chunk in chunks:
        yield sse(chunk)
    yield DONE
