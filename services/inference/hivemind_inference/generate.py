"""Turn validated OpenAI requests into llama.cpp calls on one model copy (blocking functions).

Everything here runs on the copy's own thread: message normalisation happens first, then the
prompt is rendered with the model's own chat template and counted, so an oversized prompt is a
clear 400 before any token is generated.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from typing import Any

from hivemind_common.errors import Invalid
from hivemind_inference import chat
from hivemind_inference.choices import ChoiceRun, run_whole, start_stream
from hivemind_inference.engine import ModelCopy
from hivemind_inference.logprobs import chat_top
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
        if "reasoning" in item and "reasoning_content" not in item:
            item["reasoning_content"] = item.pop("reasoning")  # either name comes back
        if item.get("tool_calls"):
            item["tool_calls"] = [_call_for_template(c) for c in item["tool_calls"]]
        elif "tool_calls" in item:
            del item["tool_calls"]  # an empty list: templates test for the key
        out.append(item)
    return out


def _call_for_template(call: Any) -> Any:
    """Templates render a call's arguments with ``tojson``: give them the object, not a string."""
    if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
        return call
    fn = dict(call["function"])
    if isinstance(fn.get("arguments"), str):
        # not JSON (or nested past the parser's depth): the template gets the text as it came
        with contextlib.suppress(ValueError, RecursionError):
            fn["arguments"] = json.loads(fn["arguments"])
    return {**call, "function": fn}


def count_chat_tokens(copy: ModelCopy, messages: list[dict[str, Any]], tools: Any = None) -> int:
    """Prompt tokens of a chat, rendered with the model's own template."""
    text = chat.render(copy, messages, tools)
    return len(copy.llama.tokenize(text.encode(), add_bos=False, special=True))


def _budget(copy: ModelCopy, prompt_tokens: int, wanted: int | None, default: int) -> int:
    room = copy.n_ctx - prompt_tokens
    if room < 1:
        # worded as agents recognise an overflow ("prompt is too long": compact and retry)
        raise Invalid(
            f"prompt is too long: {prompt_tokens} tokens > {copy.n_ctx - 1} maximum "
            f"(the context of model {copy.name!r})",
            code="context_length_exceeded",
            param="messages",
        )
    return min(wanted or default, room)


def _sampling(req: SamplingFields, vocab: int) -> dict[str, Any]:
    # one stop string is a list of one: the chat caller appends the template's own stops to
    # this list, and a string there was unpacked into its characters ("END" stopped at an E)
    # an empty stop string matches at once (every answer empty): it stops nothing
    stop = [s for s in ([req.stop] if isinstance(req.stop, str) else req.stop or []) if s]
    kw: dict[str, Any] = {
        "temperature": req.temperature,
        "top_p": req.top_p,
        "stop": stop,
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
            bias = {int(k): float(v) for k, v in req.logit_bias.items()}
        except ValueError as exc:
            raise Invalid("logit_bias keys must be token ids", param="logit_bias") from exc
        # an id outside the vocabulary raised inside llama.cpp's sampling callback, where it
        # was swallowed at every token (no bias, a traceback a token); a negative one wrapped
        if any(not 0 <= token < vocab for token in bias):
            raise Invalid(f"logit_bias token ids must be in [0, {vocab})", param="logit_bias")
        kw["logit_bias"] = bias
    return kw


def _include_usage(req: SamplingFields) -> bool:
    return req.stream_options is not None and req.stream_options.include_usage


# --- chat ---------------------------------------------------------------------------------------
def _chat_run(
    copy: ModelCopy, req: ChatRequest, default_max: int, tool_format: str | None = None
) -> ChoiceRun:
    messages = normalise_messages(req)
    plan = chat.plan_chat(
        copy,
        messages,
        tools=req.tools,
        tool_choice=req.tool_choice,
        response_format=req.response_format,
        parallel_tool_calls=req.parallel_tool_calls,
        tool_format=tool_format,
        continue_final=req.continue_final_message,
    )
    prompt = copy.llama.tokenize(plan.prompt.encode(), add_bos=False, special=True)
    prompt_tokens = len(prompt)
    top = chat_top(req.logprobs, req.top_logprobs)
    wanted = req.max_completion_tokens or req.max_tokens
    kw = _sampling(req, copy.llama.n_vocab())
    kw.update(prompt=prompt, max_tokens=_budget(copy, prompt_tokens, wanted, default_max))
    if plan.refusal is not None:  # after the length check: an overflow is the error to fix first
        raise plan.refusal
    return ChoiceRun(
        copy=copy,
        call=chat.chat_caller(copy, plan),
        kw=kw,
        chat=True,
        n=req.n,
        seed=req.seed,
        top=top,
        prompt_tokens=prompt_tokens,
        include_usage=_include_usage(req),
    )


def chat_once(
    copy: ModelCopy,
    req: ChatRequest,
    cancel: threading.Event,
    default_max: int,
    tool_format: str | None = None,
) -> dict[str, Any]:
    """A whole chat completion (``n`` choices), stopping early if ``cancel`` is set."""
    return run_whole(_chat_run(copy, req, default_max, tool_format), cancel)


def chat_chunks(
    copy: ModelCopy, req: ChatRequest, default_max: int, tool_format: str | None = None
) -> Iterator[dict[str, Any]]:
    """Stream the chunks of ``n`` chat choices; validation errors raise before the first one."""
    return start_stream(_chat_run(copy, req, default_max, tool_format))


# --- text completions ---------------------------------------------------------------------
def _prompt_text(req: CompletionRequest) -> str:
    """The prompt as one string ('' for token ids); several prompts are a 400."""
    prompt = req.prompt
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        if len(prompt) != 1:
            raise Invalid("send one prompt per request", param="prompt")
        prompt = prompt[0]
    return prompt if isinstance(prompt, str) else ""


def completion_tokens(copy: ModelCopy, req: CompletionRequest) -> list[int]:
    """The prompt as tokens; with ``suffix``, a fill-in-the-middle prompt or a clear 400.

    The FIM prompt is built here, prefix-suffix-middle, from the model's own FIM tokens:
    llama-cpp-python's ``suffix`` handling uses placeholder token ids.
    """
    prompt = req.prompt
    if isinstance(prompt, list) and prompt and not all(isinstance(p, str) for p in prompt):
        tokens = [int(t) for t in prompt]  # type: ignore[arg-type]
        vocab = copy.llama.n_vocab()
        if any(t < 0 or t >= vocab for t in tokens):
            raise Invalid(f"token ids must be in [0, {vocab})", param="prompt")
    else:
        text = _prompt_text(req)
        tokens = copy.llama.tokenize(text.encode(), add_bos=False, special=False)
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


def _text_run(copy: ModelCopy, req: CompletionRequest, default_max: int) -> ChoiceRun:
    if req.echo and req.logprobs is not None:
        raise Invalid(
            "echo with logprobs is not supported: the prompt's logprobs would need the logits "
            "of every prompt position",
            param="logprobs",
            code="unsupported_parameter",
        )
    tokens = completion_tokens(copy, req)
    if not tokens:
        tokens = [copy.llama.token_bos()]
    kw = _sampling(req, copy.llama.n_vocab())
    kw.update(
        prompt=tokens,
        max_tokens=_budget(copy, len(tokens), req.max_tokens, default_max),
        echo=req.echo,
    )
    return ChoiceRun(
        copy=copy,
        call=copy.llama.create_completion,
        kw=kw,
        chat=False,
        n=req.n,
        seed=req.seed,
        top=req.logprobs,
        prompt_tokens=len(tokens),
        text_offset=len(_prompt_text(req)),
        include_usage=_include_usage(req),
    )


def complete_once(
    copy: ModelCopy, req: CompletionRequest, cancel: threading.Event, default_max: int
) -> dict[str, Any]:
    """A whole text completion (``n`` choices), stopping early if ``cancel`` is set."""
    return run_whole(_text_run(copy, req, default_max), cancel)


def completion_chunks(
    copy: ModelCopy, req: CompletionRequest, default_max: int
) -> Iterator[dict[str, Any]]:
    """Stream the chunks of ``n`` text choices; validation errors raise before the first one."""
    return start_stream(_text_run(copy, req, default_max))
