"""Turn validated OpenAI requests into llama.cpp calls on one model copy (blocking functions).

Everything here runs on the copy's own thread: message normalisation happens first, then the
prompt is rendered with the model's own chat template and counted, so an oversized prompt is a
clear 400 before any token is generated.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from hivemind_common.errors import Invalid
from hivemind_inference.engine import GenerationCancelled, ModelCopy, cancel_processor
from hivemind_inference.schemas import ChatRequest, CompletionRequest, SamplingFields

_TEXT_PART_TYPES = frozenset({"text", "input_text"})


def normalise_messages(req: ChatRequest) -> list[dict[str, Any]]:
    """Plain-string contents for the chat template: text parts joined, null as empty."""
    out: list[dict[str, Any]] = []
    for i, msg in enumerate(req.messages):
        item = msg.model_dump(exclude_none=True)
        content = msg.content
        if isinstance(content, list):
            texts: list[str] = []
            for j, part in enumerate(content):
                kind = part.get("type")
                if kind in _TEXT_PART_TYPES and isinstance(part.get("text"), str):
                    texts.append(part["text"])
                else:
                    raise Invalid(
                        f"content part of type {kind!r} is not supported by this text-only model",
                        param=f"messages[{i}].content[{j}]",
                        code="unsupported_content",
                    )
            content = "\n".join(texts)
        item["content"] = content or ""
        if item["role"] == "developer":
            item["role"] = "system"
        out.append(item)
    return out


def count_chat_tokens(copy: ModelCopy, messages: list[dict[str, Any]], tools: Any = None) -> int:
    """Prompt tokens of a chat, rendered with the model's own template."""
    if copy.formatter is None:
        text = "\n".join(f"{m['role']}: {m['content']}" for m in messages)
    else:
        text = copy.formatter(messages=messages, tools=tools).prompt
    return len(copy.llama.tokenize(text.encode(), add_bos=False, special=True))


def _budget(copy: ModelCopy, prompt_tokens: int, wanted: int | None, default: int) -> int:
    room = copy.n_ctx - prompt_tokens
    if room < 1:
        raise Invalid(
            f"this prompt is {prompt_tokens} tokens; model {copy.name!r} has a context of "
            f"{copy.n_ctx} tokens",
            code="context_length_exceeded",
            param="messages",
        )
    return min(wanted or default, room)


def _sampling(req: SamplingFields) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "temperature": req.temperature,
        "top_p": req.top_p,
        "stop": req.stop or [],
        "seed": req.seed,
        "presence_penalty": req.presence_penalty,
        "frequency_penalty": req.frequency_penalty,
    }
    if req.top_k is not None:
        kw["top_k"] = req.top_k
    if req.min_p is not None:
        kw["min_p"] = req.min_p
    if req.repeat_penalty is not None:
        kw["repeat_penalty"] = req.repeat_penalty
    if req.logit_bias:
        try:
            kw["logit_bias"] = {int(k): float(v) for k, v in req.logit_bias.items()}
        except ValueError as exc:
            raise Invalid("logit_bias keys must be token ids", param="logit_bias") from exc
    return kw


def _stamp(obj: dict[str, Any], copy: ModelCopy) -> dict[str, Any]:
    obj["model"] = copy.name
    obj["system_fingerprint"] = copy.version
    return obj


def _call(fn: Any, **kw: Any) -> Any:
    try:
        return fn(**kw)
    except ValueError as exc:  # llama.cpp's way of refusing an input (grammar, logprobs, ...)
        raise Invalid(f"the model refused this request: {exc}") from exc


# --- chat ---------------------------------------------------------------------------------------
def _chat_kwargs(copy: ModelCopy, req: ChatRequest, default_max: int) -> dict[str, Any]:
    messages = normalise_messages(req)
    prompt_tokens = count_chat_tokens(copy, messages, req.tools)
    wanted = req.max_completion_tokens or req.max_tokens
    kw = _sampling(req)
    kw.update(
        messages=messages,
        max_tokens=_budget(copy, prompt_tokens, wanted, default_max),
        tools=req.tools,
        tool_choice=req.tool_choice,
        response_format=req.response_format,
        logprobs=req.logprobs,
        top_logprobs=req.top_logprobs,
    )
    kw["_prompt_tokens"] = prompt_tokens
    return kw


def chat_once(
    copy: ModelCopy, req: ChatRequest, cancel: threading.Event, default_max: int
) -> dict[str, Any]:
    """A whole chat completion (``n`` choices), stopping early if ``cancel`` is set."""
    kw = _chat_kwargs(copy, req, default_max)
    kw.pop("_prompt_tokens")
    kw["logits_processor"] = cancel_processor(cancel, copy.llama.token_eos())
    result: dict[str, Any] | None = None
    for i in range(req.n):
        if req.seed is not None:
            kw["seed"] = req.seed + i
        one = _call(copy.llama.create_chat_completion, **kw)
        if cancel.is_set():
            raise GenerationCancelled()
        if result is None:
            result = one
            continue
        for choice in one["choices"]:
            choice["index"] = len(result["choices"])
            result["choices"].append(choice)
        for field in ("completion_tokens", "total_tokens"):
            result["usage"][field] += one["usage"][field]
    assert result is not None
    return _stamp(result, copy)


def chat_chunks(copy: ModelCopy, req: ChatRequest, default_max: int) -> Iterator[dict[str, Any]]:
    """Stream chunks of one chat completion; validation errors raise before the first chunk."""
    if req.n != 1:
        raise Invalid("n > 1 is not supported with stream=true", param="n")
    kw = _chat_kwargs(copy, req, default_max)
    prompt_tokens = kw.pop("_prompt_tokens")
    chunks = _call(copy.llama.create_chat_completion, stream=True, **kw)
    return _stream_stamped(copy, chunks, prompt_tokens, req, chat=True)


def _stream_stamped(
    copy: ModelCopy, chunks: Iterator[dict[str, Any]], prompt_tokens: int, req: Any, *, chat: bool
) -> Iterator[dict[str, Any]]:
    produced = 0
    last: dict[str, Any] | None = None
    try:
        for chunk in _relay_errors(chunks):
            choice = chunk["choices"][0] if chunk.get("choices") else {}
            delta = choice.get("delta", {}) if chat else choice
            if delta.get("content") or delta.get("text") or delta.get("tool_calls"):
                produced += 1
            last = chunk
            yield _stamp(chunk, copy)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    include_usage = req.stream_options is not None and req.stream_options.include_usage
    if include_usage and last is not None:
        yield _stamp(
            {
                "id": last.get("id"),
                "object": last.get("object"),
                "created": last.get("created", int(time.time())),
                "choices": [],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": produced,
                    "total_tokens": prompt_tokens + produced,
                },
            },
            copy,
        )


def _relay_errors(chunks: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    try:
        yield from chunks
    except ValueError as exc:
        raise Invalid(f"the model refused this request: {exc}") from exc


# --- text completions ---------------------------------------------------------------------
def completion_tokens(copy: ModelCopy, req: CompletionRequest) -> list[int]:
    """The prompt as tokens; with ``suffix``, a fill-in-the-middle prompt or a clear 400."""
    prompt = req.prompt
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        if len(prompt) != 1:
            raise Invalid("send one prompt per request", param="prompt")
        prompt = prompt[0]
    if isinstance(prompt, list):
        tokens = [int(t) for t in prompt]
        vocab = copy.llama.n_vocab()
        if any(t < 0 or t >= vocab for t in tokens):
            raise Invalid(f"token ids must be in [0, {vocab})", param="prompt")
    else:
        tokens = copy.llama.tokenize(str(prompt).encode(), add_bos=False, special=False)
    if req.suffix is None:
        return tokens
    if copy.fim is None:
        raise Invalid(
            f"model {copy.name!r} (version {copy.version}) has no fill-in-the-middle tokens, "
            "so 'suffix' cannot be used; serve a FIM-trained model (e.g. a coder model) for it",
            code="fim_not_supported",
            param="suffix",
        )
    pre, suf, mid = copy.fim
    tail = copy.llama.tokenize(req.suffix.encode(), add_bos=False, special=False)
    return [pre, *tokens, suf, *tail, mid]


def _completion_kwargs(copy: ModelCopy, req: CompletionRequest, default_max: int) -> dict[str, Any]:
    tokens = completion_tokens(copy, req)
    if not tokens:
        tokens = [copy.llama.token_bos()]
    kw = _sampling(req)
    kw.update(
        prompt=tokens,
        max_tokens=_budget(copy, len(tokens), req.max_tokens, default_max),
        echo=req.echo,
        logprobs=req.logprobs,
    )
    return kw


def complete_once(
    copy: ModelCopy, req: CompletionRequest, cancel: threading.Event, default_max: int
) -> dict[str, Any]:
    kw = _completion_kwargs(copy, req, default_max)
    kw["logits_processor"] = cancel_processor(cancel, copy.llama.token_eos())
    result: dict[str, Any] | None = None
    for i in range(req.n):
        if req.seed is not None:
            kw["seed"] = req.seed + i
        one = _call(copy.llama.create_completion, **kw)
        if cancel.is_set():
            raise GenerationCancelled()
        if result is None:
            result = one
            continue
        for choice in one["choices"]:
            choice["index"] = len(result["choices"])
            result["choices"].append(choice)
        for field in ("completion_tokens", "total_tokens"):
            result["usage"][field] += one["usage"][field]
    assert result is not None
    return _stamp(result, copy)


def completion_chunks(
    copy: ModelCopy, req: CompletionRequest, default_max: int
) -> Iterator[dict[str, Any]]:
    if req.n != 1:
        raise Invalid("n > 1 is not supported with stream=true", param="n")
    kw = _completion_kwargs(copy, req, default_max)
    chunks = _call(copy.llama.create_completion, stream=True, **kw)
    return _stream_stamped(copy, chunks, len(kw["prompt"]), req, chat=False)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"
