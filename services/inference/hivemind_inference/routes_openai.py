"""OpenAI-compatible routes of the inference service, plus /tokenize and /detokenize."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from hivemind_common.auth import InternalCaller
from hivemind_common.error_handlers import openai_error_body
from hivemind_common.errors import HivemindError, Invalid
from hivemind_common.partition import PARTITION_HEADER, partition_from
from hivemind_common.streams import ClosingStream
from hivemind_common.wire import OpenAIRoute
from hivemind_inference import generate, metrics
from hivemind_inference.engine import GenerationCancelled, ModelCopy
from hivemind_inference.registry import LoadedModels, ModelSlot
from hivemind_inference.schemas import (
    ChatRequest,
    CompletionRequest,
    DetokenizeRequest,
    TokenizeRequest,
)
from hivemind_inference.state import ModelsDep

log = logging.getLogger(__name__)
router = APIRouter(dependencies=[InternalCaller], route_class=OpenAIRoute)
# llama.cpp-style helpers beside the OpenAI API; their errors are problem+json
native_router = APIRouter(dependencies=[InternalCaller])

VERSION_HEADER = "x-hivemind-model-version"
MODEL_HEADER = "x-hivemind-model"


def _headers(copy: ModelCopy) -> dict[str, str]:
    return {VERSION_HEADER: copy.version, MODEL_HEADER: copy.name}


def _model_card(slot: ModelSlot) -> dict[str, Any]:
    info = slot.describe()
    return {
        "id": info["name"],
        "object": "model",
        "created": int(info["loaded_at"]),
        "owned_by": "hivemind",
        "version": info["version"],
        "aliases": info["aliases"],
        "n_ctx": info["n_ctx"],
        "fim": info["fim"],
        "swapping": info["swapping_to"] is not None,
    }


@router.get("/v1/models")
async def list_models(models: ModelsDep) -> dict[str, Any]:
    return {"object": "list", "data": [_model_card(s) for s in models.slots.values()]}


@router.get("/v1/models/{model_id}")
async def get_model(model_id: str, models: ModelsDep) -> dict[str, Any]:
    return _model_card(models.resolve(model_id))


async def _watch_disconnect(request: Request, cancel: threading.Event) -> None:
    """Set ``cancel`` when the client goes away (the body has been read already)."""
    while not cancel.is_set():
        message = await request.receive()
        if message["type"] == "http.disconnect":
            cancel.set()
            return


async def _run_whole(
    request: Request, slot: ModelSlot, job: Callable[[ModelCopy, threading.Event], Any]
) -> JSONResponse:
    cancel = threading.Event()
    async with slot.admit() as copy:
        watcher = asyncio.create_task(_watch_disconnect(request, cancel))
        try:
            result = await copy.run(job, copy, cancel)
        except GenerationCancelled:
            log.info("client went away; generation on %s stopped", copy.name)
            return JSONResponse({"error": "client closed request"}, status_code=499)
        finally:
            cancel.set()
            watcher.cancel()
    usage = result.get("usage") or {}
    metrics.TOKENS.labels(copy.name, "prompt").inc(usage.get("prompt_tokens", 0))
    metrics.TOKENS.labels(copy.name, "completion").inc(usage.get("completion_tokens", 0))
    return JSONResponse(result, headers=_headers(copy))


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


async def _run_stream(
    slot: ModelSlot, make_iter: Callable[[ModelCopy], Iterator[dict[str, Any]]]
) -> StreamingResponse:
    """Admit, start generating, wait for the first chunk (errors are still a JSON 4xx), stream."""
    stack = AsyncExitStack()
    copy = await stack.enter_async_context(slot.admit())
    cancel = threading.Event()
    chunks = copy.stream(lambda: make_iter(copy), cancel)
    try:
        first = await chunks.__anext__()
    except StopAsyncIteration:
        first = None
    except BaseException:
        await chunks.aclose()
        await stack.aclose()
        raise

    async def close() -> None:
        cancel.set()
        await chunks.aclose()
        await stack.aclose()

    async def body() -> AsyncIterator[bytes]:
        try:
            if first is not None:
                yield _sse(first)
            async for chunk in chunks:
                if chunk.get("choices"):
                    metrics.TOKENS.labels(copy.name, "completion").inc()
                yield _sse(chunk)
        except HivemindError as exc:
            yield _sse(openai_error_body(exc.status, exc.message, code=exc.code))
        except Exception:
            log.exception("stream failed on %s", copy.name)
            yield _sse(openai_error_body(500, "generation failed", code="internal_error"))
        finally:
            await close()
        yield b"data: [DONE]\n\n"

    return ClosingStream(
        body(), media_type="text/event-stream", headers=_headers(copy), on_close=close
    )


def _check_choices(reg: LoadedModels, n: int) -> None:
    if n > reg.settings.max_choices:
        raise Invalid(
            f"n is at most {reg.settings.max_choices} here (choices are generated one by one)",
            param="n",
            code="invalid_value",
        )


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(
    body: ChatRequest, request: Request, models: ModelsDep
) -> JSONResponse | StreamingResponse:
    slot = models.resolve(body.model)
    _check_choices(models, body.n)
    default_max = models.settings.max_tokens_default
    tools = slot.spec.tool_format or models.settings.tool_format
    cache_bytes = models.settings.prompt_cache_mb * 1024 * 1024
    partition = partition_from(request.headers.get(PARTITION_HEADER))

    def chunks(c: ModelCopy) -> Iterator[dict[str, Any]]:
        c.enter(partition, cache_bytes)  # on the copy's thread, before the generation
        return generate.chat_chunks(c, body, default_max, tools)

    def whole(c: ModelCopy, cancel: threading.Event) -> dict[str, Any]:
        c.enter(partition, cache_bytes)
        return generate.chat_once(c, body, cancel, default_max, tools)

    if body.stream:
        return await _run_stream(slot, chunks)
    return await _run_whole(request, slot, whole)


@router.post("/v1/completions", response_model=None)
async def completions(
    body: CompletionRequest, request: Request, models: ModelsDep
) -> JSONResponse | StreamingResponse:
    slot = models.resolve(body.model)
    _check_choices(models, body.n)
    default_max = models.settings.max_tokens_default
    cache_bytes = models.settings.prompt_cache_mb * 1024 * 1024
    partition = partition_from(request.headers.get(PARTITION_HEADER))

    def chunks(c: ModelCopy) -> Iterator[dict[str, Any]]:
        c.enter(partition, cache_bytes)
        return generate.completion_chunks(c, body, default_max)

    def whole(c: ModelCopy, cancel: threading.Event) -> dict[str, Any]:
        c.enter(partition, cache_bytes)
        return generate.complete_once(c, body, cancel, default_max)

    if body.stream:
        return await _run_stream(slot, chunks)
    return await _run_whole(request, slot, whole)


@native_router.post("/tokenize")
async def tokenize(body: TokenizeRequest, models: ModelsDep) -> dict[str, Any]:
    """Tokens of ``content``, or the count of a chat rendered with the model's template."""
    if (body.content is None) == (body.messages is None):
        raise Invalid("send exactly one of 'content' or 'messages'")
    slot = models.resolve(body.model)
    # the vocabulary is read-only: tokenizing never waits behind a generation
    async with slot.pin() as copy:

        def work() -> dict[str, Any]:
            if body.messages is not None:
                req = ChatRequest(messages=body.messages)
                messages = generate.normalise_messages(req)
                count = generate.count_chat_tokens(copy, messages, body.tools)
                return {"count": count}
            assert body.content is not None
            tokens = copy.llama.tokenize(
                body.content.encode(), add_bos=body.add_special, special=body.add_special
            )
            return {"tokens": tokens, "count": len(tokens)}

        out = await asyncio.to_thread(work)
        out.update(model=copy.name, version=copy.version, n_ctx=copy.n_ctx)
        return out


@native_router.post("/detokenize")
async def detokenize(body: DetokenizeRequest, models: ModelsDep) -> dict[str, Any]:
    slot = models.resolve(body.model)
    async with slot.pin() as copy:
        vocab = copy.llama.n_vocab()
        if any(t < 0 or t >= vocab for t in body.tokens):
            raise Invalid(f"token ids must be in [0, {vocab})", param="tokens")
        raw = await asyncio.to_thread(copy.llama.detokenize, body.tokens)
        return {"content": raw.decode("utf-8", errors="replace"), "model": copy.name}


__all__ = ["MODEL_HEADER", "VERSION_HEADER", "router"]
