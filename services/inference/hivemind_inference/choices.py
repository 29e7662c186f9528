"""Run the ``n`` choices of one request on a model copy, whole or streamed (blocking).

Choices are generated one after another (one llama.cpp context per copy), the ``i``-th with
``seed + i`` when a seed was given. Each generation is traced by a
:class:`~hivemind_inference.logprobs.TokenTrace`: it stops the generation when the client has
gone, counts the tokens for the usage, and records logprobs when the request asked for them.
A stream sends every choice's chunks with the choice's ``index`` and one id for all of them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from hivemind_common.errors import Invalid
from hivemind_inference.engine import GenerationCancelled, ModelCopy
from hivemind_inference.logprobs import Aligner, TokenTrace, chat_logprobs, text_logprobs
from hivemind_inference.schemas import usable_seed


@dataclass
class ChoiceRun:
    """One request, ready to run: the llama.cpp call, its arguments and what to report."""

    copy: ModelCopy
    call: Callable[..., Any]  # create_chat_completion or create_completion
    kw: dict[str, Any]
    chat: bool
    n: int = 1
    seed: int | None = None
    top: int | None = None  # alternatives per token; None: no logprobs
    prompt_tokens: int = 0
    text_offset: int = 0  # legacy logprobs: offset of the first generated character
    include_usage: bool = False

    def kwargs(self, index: int) -> dict[str, Any]:
        kw = dict(self.kw)
        if self.seed is not None:
            kw["seed"] = usable_seed(self.seed + index)
        return kw


@contextmanager
def hooked(llama: Any, hook: Callable[[int], None]) -> Iterator[None]:
    """Route the tokens sampled by generations started inside the block to ``hook``."""
    llama.on_token = hook  # a TracingLlama reads it when a generation starts
    try:
        yield
    finally:
        llama.on_token = None


def stamp(obj: dict[str, Any], copy: ModelCopy) -> dict[str, Any]:
    """Name the model and its served version on a response or chunk."""
    obj["model"] = copy.name
    obj["system_fingerprint"] = copy.version
    return obj


def call_llama(fn: Callable[..., Any], **kw: Any) -> Any:
    try:
        return fn(**kw)
    except ValueError as exc:  # llama.cpp's way of refusing an input (grammar, template, ...)
        raise Invalid(f"the model refused this request: {exc}") from exc


def _relay_errors(chunks: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    try:
        yield from chunks
    except ValueError as exc:
        raise Invalid(f"the model refused this request: {exc}") from exc


# --- whole ----------------------------------------------------------------------------------
def run_whole(run: ChoiceRun, cancel: threading.Event) -> dict[str, Any]:
    """Every choice, generated in turn, in one response; stops early once ``cancel`` is set."""
    llama = run.copy.llama
    result: dict[str, Any] | None = None
    for index in range(run.n):
        trace = TokenTrace(llama, top=run.top, cancel=cancel)
        with hooked(llama, trace):
            one = call_llama(run.call, **run.kwargs(index))
        if cancel.is_set():
            raise GenerationCancelled()
        choice = one["choices"][0]
        choice["index"] = index
        _name_stop(run, choice, trace)
        if run.top is not None:
            choice["logprobs"] = _whole_logprobs(run, choice, trace)
        if result is None:
            result = one
            continue
        result["choices"].append(choice)
        for field in ("completion_tokens", "total_tokens"):
            result["usage"][field] += one["usage"][field]
    assert result is not None
    return stamp(result, run.copy)


def _name_stop(run: ChoiceRun, choice: dict[str, Any], trace: TokenTrace) -> None:
    """``stop_reason``: the caller's stop string that ended the choice (vLLM's field), so the
    Messages API can answer ``stop_sequence``. llama.cpp cuts at the first of the stop list
    found in the text; the template's own stops come after the caller's."""
    stops = run.kw.get("stop") or []
    if choice.get("finish_reason") != "stop" or trace.eog or not stops or not trace.tokens:
        return
    text = run.copy.llama.detokenize(trace.tokens).decode("utf-8", errors="replace")
    found = next((s for s in stops if s and s in text), None)
    if found is not None:
        choice["stop_reason"] = found


def _whole_logprobs(run: ChoiceRun, choice: dict[str, Any], trace: TokenTrace) -> Any:
    if not run.chat:
        aligned = Aligner(trace).all(choice.get("text") or "")
        return text_logprobs(aligned, offset=run.text_offset)
    content = (choice.get("message") or {}).get("content")
    if content is None:  # a tool call: no content to line tokens up with
        return {"content": None, "refusal": None}
    return chat_logprobs(Aligner(trace).all(content))


# --- streamed -------------------------------------------------------------------------------
def start_stream(run: ChoiceRun) -> Iterator[dict[str, Any]]:
    """The chunks of every choice; the first call is made now, so its refusal raises here."""
    first = call_llama(run.call, stream=True, **run.kwargs(0))
    return _stream(run, first)


def _stream(run: ChoiceRun, first: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    llama = run.copy.llama
    head: dict[str, Any] = {}
    produced = 0
    for index in range(run.n):
        chunks = first if index == 0 else call_llama(run.call, stream=True, **run.kwargs(index))
        trace = TokenTrace(llama, top=run.top)
        aligner = Aligner(trace)
        offset = run.text_offset
        try:
            with hooked(llama, trace):
                for chunk in _relay_errors(chunks):
                    if not head:
                        head = {"id": chunk.get("id"), "created": chunk.get("created")}
                    chunk.update(head)
                    for choice in chunk.get("choices") or []:
                        choice["index"] = index
                        if choice.get("finish_reason"):
                            _name_stop(run, choice, trace)
                        if run.top is not None:
                            choice["logprobs"], offset = _chunk_logprobs(
                                run, choice, aligner, offset
                            )
                    yield stamp(chunk, run.copy)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        produced += trace.count
    if run.include_usage and head:
        usage = {
            "prompt_tokens": run.prompt_tokens,
            "completion_tokens": produced,
            "total_tokens": run.prompt_tokens + produced,
        }
        obj = "chat.completion.chunk" if run.chat else "text_completion"
        yield stamp({**head, "object": obj, "choices": [], "usage": usage}, run.copy)


def _chunk_logprobs(
    run: ChoiceRun, choice: dict[str, Any], aligner: Aligner, offset: int
) -> tuple[Any, int]:
    """The logprobs of the tokens one chunk's text completed (the cut last one at the end)."""
    text = (choice.get("delta") or {}).get("content") if run.chat else choice.get("text")
    aligned = aligner.take(text) if text else []
    if choice.get("finish_reason"):
        aligned += aligner.rest()
    if run.chat:
        return (chat_logprobs(aligned) if aligned else None), offset
    shaped = text_logprobs(aligned, offset=offset)
    return shaped, offset + sum(len(a.text) for a in aligned)
