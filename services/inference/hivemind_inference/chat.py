"""Chat on a model copy: the prompt from its own template, tools, grammars, and parsed answers.

A chat is rendered here (not by llama-cpp-python's chat handler) so that one place decides what
the model sees and how its text becomes an answer: tool calls are parsed in the family the
template speaks (:mod:`hivemind_inference.toolcalls`), ``tool_choice`` ``required`` or a named
function and ``response_format`` are forced with a grammar (:mod:`hivemind_inference.grammars`),
and reasoning text between ``<think>`` tags is returned as ``reasoning_content``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from hivemind_common.errors import Invalid, Unprocessable
from hivemind_inference import grammars
from hivemind_inference.engine import ModelCopy
from hivemind_inference.reasoning import ThinkSplitter
from hivemind_inference.toolcalls import (
    FAMILIES,
    CallArgs,
    CallStart,
    Content,
    Event,
    Family,
    ToolCallParser,
    template_family,
)

log = logging.getLogger(__name__)

# Shown to a model whose template cannot render tools, when a call is forced anyway.
_FORCED_TOOLS_NOTE = (
    "You can call these tools. Answer with one JSON object "
    '{{"name": <tool name>, "arguments": <arguments object>}}.\nTools: {tools}'
)


@dataclass
class ChatPlan:
    """How one chat runs: its prompt and grammar, and how its text is read back."""

    prompt: str
    stop: list[str]
    grammar: str | None = None
    family: Family | None = None  # parse tool calls in this family (None: no tools)
    forced: bool = False  # the whole answer is one forced tool call
    parallel: bool = True
    schema: dict[str, Any] | None = None  # validate the answer against it
    thinking: bool = False  # the prompt opened a <think> block
    tool_names: frozenset[str] = field(default_factory=frozenset)
    refusal: Invalid | None = None  # raised once the prompt is known to fit the context


def copy_family(copy: ModelCopy, setting: str | None) -> Family | None:
    """The tool-call family of a copy: the setting when it names one, else its template's."""
    if setting == "none":
        return None
    if setting in FAMILIES:
        return setting  # type: ignore[return-value]
    return template_family(getattr(copy, "template", None))


def _forced_tools(tools: list[dict[str, Any]], choice: Any) -> list[dict[str, Any]] | None:
    """The tools one of which must be called, or None when the model may answer in text."""
    if choice == "required":
        return tools
    if isinstance(choice, dict):
        function = choice.get("function")
        name = (function.get("name") if isinstance(function, dict) else None) or choice.get("name")
        if not isinstance(name, str):
            raise Invalid(
                "tool_choice names a function as {'type': 'function', 'function': {'name': ...}}",
                param="tool_choice",
                code="invalid_value",
            )
        chosen = [t for t in tools if t["function"]["name"] == name]
        if not chosen:
            raise Invalid(
                f"tool_choice names {name!r}, which is not among the tools",
                param="tool_choice",
                code="invalid_value",
            )
        return chosen
    if choice not in (None, "auto"):
        raise Invalid(
            "tool_choice is 'none', 'auto', 'required' or a named function",
            param="tool_choice",
            code="invalid_value",
        )
    return None


def _with_system_note(messages: list[dict[str, Any]], note: str) -> list[dict[str, Any]]:
    out = [dict(m) for m in messages]
    if out and out[0]["role"] == "system":
        out[0]["content"] = f"{out[0]['content']}\n\n{note}".strip()
        return out
    return [{"role": "system", "content": note}, *out]


def _nine_char_id(call_id: Any) -> str:
    text = str(call_id or "")
    if len(text) == 9 and text.isascii() and text.isalnum():
        return text
    return hashlib.sha256(text.encode()).hexdigest()[:9]


def short_call_ids(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``messages`` with every tool call id, and every tool result's ``tool_call_id``, as the
    same 9 letters and digits: Mistral's templates raise on any other id ("Tool call IDs should
    be alphanumeric strings with length 9!"), so every turn after a tool call (OpenAI's
    ``call_...``, Anthropic's ``toolu_...``) was a 400. The ids only pair calls with results
    inside the prompt; the same id always maps to the same short one."""
    out: list[dict[str, Any]] = []
    for message in messages:
        calls = message.get("tool_calls")
        if isinstance(calls, list):
            calls = [
                {**c, "id": _nine_char_id(c.get("id"))} if isinstance(c, dict) else c for c in calls
            ]
            message = {**message, "tool_calls": calls}
        if "tool_call_id" in message:
            message = {**message, "tool_call_id": _nine_char_id(message["tool_call_id"])}
        out.append(message)
    return out


def render(copy: ModelCopy, messages: list[dict[str, Any]], tools: Any = None) -> str:
    """The prompt text of a chat by the model's own template; a template's refusal is a 400."""
    if copy.formatter is None:
        return "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant: "
    if template_family(getattr(copy, "template", None)) == "mistral":
        messages = short_call_ids(messages)
    try:
        return str(copy.formatter(messages=messages, tools=tools).prompt)
    except Exception as exc:  # jinja2's errors and the template's own raise_exception
        raise Invalid(
            f"the chat template of model {copy.name!r} refused these messages: {exc}",
            param="messages",
            code="template_error",
        ) from exc


def plan_chat(
    copy: ModelCopy,
    messages: list[dict[str, Any]],
    *,
    tools: list[dict[str, Any]] | None,
    tool_choice: Any,
    response_format: dict[str, Any] | None,
    parallel_tool_calls: bool | None,
    tool_format: str | None,
    continue_final: bool = False,
) -> ChatPlan:
    """Decide prompt, grammar and parsing for a chat (raises Invalid before any generation).

    ``continue_final``: the final assistant message is a prefill; the prompt ends with it, in
    the assistant's open turn, and the answer is what follows it (Anthropic's prefill)."""
    prefill = ""
    if continue_final:
        last = messages[-1] if messages else {}
        if last.get("role") != "assistant" or last.get("tool_calls"):
            raise Invalid(
                "continue_final_message needs the last message to be an assistant's text",
                param="messages",
            )
        prefill = str(last.get("content") or "")
        messages = messages[:-1]
    if tool_choice == "none":
        tools = None  # "none" sends no tools to the template
    tools = tools or None
    if tools is None and (tool_choice == "required" or isinstance(tool_choice, dict)):
        raise Invalid(
            "tool_choice names a tool to call, but the request has no tools",
            param="tool_choice",
            code="invalid_value",
        )
    schema, _strict = grammars.response_schema(response_format)
    family = copy_family(copy, tool_format)
    forced: list[dict[str, Any]] | None = None
    grammar: str | None = None
    refusal: Invalid | None = None
    if tools:
        grammars.check_tool_names(tools)
        forced = _forced_tools(tools, tool_choice)
        if schema is not None:
            raise Invalid(
                "response_format cannot be combined with tools in one request",
                param="response_format",
                code="unsupported_parameter",
            )
        if family is None and forced is None:
            refusal = Invalid(
                f"the chat template of model {copy.name!r} cannot render tools, so its tool "
                "calls could not be read back; serve a tool-capable model (Qwen2.5, Llama 3.1+, "
                "Mistral), set its tool_format, or force a call with tool_choice",
                param="tools",
                code="tools_not_supported",
            )
        if forced is not None:
            grammar = grammars.tool_call_gbnf(forced, grammars.grammar_loader(copy.llama))
    elif schema is not None:
        grammar = grammars.schema_to_gbnf(
            schema, param="response_format", loads=grammars.grammar_loader(copy.llama)
        )
    if prefill and grammar is not None:
        raise Invalid(
            "a prefilled answer cannot be combined with a forced tool call or response_format",
            param="messages",
        )
    if tools and family is None:
        note = _FORCED_TOOLS_NOTE.format(tools=json.dumps([t["function"] for t in tools]))
        prompt = render(copy, _with_system_note(messages, note))
    else:
        prompt = render(copy, messages, tools)
    prompt += prefill
    return ChatPlan(
        prompt=prompt,
        stop=[copy.eos_text] if copy.eos_text else [],
        grammar=grammar,
        family=(family or "hermes") if tools else None,
        forced=forced is not None,
        parallel=parallel_tool_calls is not False,
        schema=schema,
        thinking=prompt.rstrip().endswith("<think>") and grammar is None,
        tool_names=frozenset(t["function"]["name"] for t in tools or []),
        refusal=refusal,
    )


# --- reading the answer -----------------------------------------------------------------------
class AnswerReader:
    """Turns generated text pieces into chat deltas: content, reasoning and tool calls."""

    def __init__(self, plan: ChatPlan) -> None:
        self.plan = plan
        self.think = ThinkSplitter(started=plan.thinking) if plan.grammar is None else None
        self.parser = (
            ToolCallParser(plan.family, forced=plan.forced, names=plan.tool_names or None)
            if plan.family
            else None
        )
        self.calls = 0

    def feed(self, text: str) -> list[dict[str, Any]]:
        return self._deltas(text, final=False)

    def finish(self) -> list[dict[str, Any]]:
        return self._deltas("", final=True)

    def _deltas(self, text: str, *, final: bool) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self.think is not None:
            reasoning, text = self.think.feed(text) if not final else self.think.finish()
            if reasoning:
                out.append({"reasoning_content": reasoning})
        events: list[Event]
        if self.parser is None:
            events = [Content(text)] if text else []
        else:
            events = self.parser.feed(text) if text else []
            if final:
                events += self.parser.finish()
        for event in events:
            delta = self._delta(event)
            if delta:
                out.append(delta)
        return out

    def _delta(self, event: Event) -> dict[str, Any] | None:
        if isinstance(event, Content):
            return {"content": event.text} if event.text else None
        if event.index > 0 and not self.plan.parallel:
            return None  # parallel_tool_calls: false keeps the first call
        if isinstance(event, CallStart):
            self.calls = max(self.calls, event.index + 1)
            call = {
                "index": event.index,
                "id": event.id,
                "type": "function",
                "function": {"name": event.name, "arguments": ""},
            }
            return {"tool_calls": [call]}
        assert isinstance(event, CallArgs)
        return {"tool_calls": [{"index": event.index, "function": {"arguments": event.piece}}]}


def merge_deltas(deltas: list[dict[str, Any]]) -> dict[str, Any]:
    """The assistant message the deltas of one answer add up to."""
    message: dict[str, Any] = {"role": "assistant", "content": None}
    calls: dict[int, dict[str, Any]] = {}
    for delta in deltas:
        for key in ("content", "reasoning_content"):
            if key in delta:
                message[key] = (message.get(key) or "") + delta[key]
        for part in delta.get("tool_calls") or []:
            if "id" in part:
                calls[part["index"]] = {
                    "id": part["id"],
                    "type": "function",
                    "function": {"name": part["function"]["name"], "arguments": ""},
                }
            calls[part["index"]]["function"]["arguments"] += part["function"]["arguments"]
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    return message


def check_answer(plan: ChatPlan, message: dict[str, Any], finish: str | None) -> None:
    """A finished JSON answer must match its schema (a grammar bug would show here)."""
    if plan.schema is None or finish != "stop":
        return
    import jsonschema

    try:
        jsonschema.validate(json.loads(message.get("content") or ""), plan.schema)
    except (ValueError, jsonschema.ValidationError) as exc:
        raise Unprocessable(
            f"the model's answer does not match response_format's schema: {exc}",
            code="schema_mismatch",
        ) from exc
    except Exception as exc:  # a schema the validator cannot use (an unresolvable $ref)
        raise Invalid(
            f"response_format's schema cannot be checked: {exc}",
            param="response_format.json_schema.schema",
            code="invalid_schema",
        ) from exc


# --- the llama.cpp call, in chat shape --------------------------------------------------------
def chat_caller(copy: ModelCopy, plan: ChatPlan) -> Callable[..., Any]:
    """A ``create_chat_completion``-like callable: text generation read back as a chat."""

    def call(*, stream: bool = False, **kw: Any) -> Any:
        if plan.grammar is not None:
            from llama_cpp.llama_grammar import LlamaGrammar

            kw["grammar"] = LlamaGrammar.from_string(plan.grammar, verbose=False)
        kw["stop"] = [*(kw.get("stop") or []), *plan.stop]
        if stream:
            return _stream(copy, plan, copy.llama.create_completion(stream=True, **kw))
        return _whole(plan, copy.llama.create_completion(**kw))

    return call


def _finish_reason(reason: str | None, reader: AnswerReader) -> str | None:
    if reader.calls and reason == "stop":
        return "tool_calls"
    return reason


def _whole(plan: ChatPlan, done: dict[str, Any]) -> dict[str, Any]:
    choice = done["choices"][0]
    reader = AnswerReader(plan)
    message = merge_deltas(reader.feed(choice.get("text") or "") + reader.finish())
    finish = _finish_reason(choice.get("finish_reason"), reader)
    check_answer(plan, message, finish)
    return {
        "id": "chat" + str(done["id"]),
        "object": "chat.completion",
        "created": done.get("created", int(time.time())),
        "model": done.get("model"),
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": done.get("usage"),
    }


def _stream(
    copy: ModelCopy, plan: ChatPlan, chunks: Iterator[dict[str, Any]]
) -> Iterator[dict[str, Any]]:
    reader = AnswerReader(plan)
    head: dict[str, Any] | None = None

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        assert head is not None
        return {
            **head,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    try:
        for part in chunks:
            if head is None:
                head = {
                    "id": "chat" + str(part["id"]),
                    "object": "chat.completion.chunk",
                    "created": part.get("created", int(time.time())),
                    "model": part.get("model"),
                }
                yield chunk({"role": "assistant", "content": ""})
            choice = part["choices"][0]
            for delta in reader.feed(choice.get("text") or ""):
                yield chunk(delta)
            reason = choice.get("finish_reason")
            if reason:
                for delta in reader.finish():
                    yield chunk(delta)
                yield chunk({}, _finish_reason(reason, reader))
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
