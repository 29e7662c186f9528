"""Anthropic Messages requests to the chat pipeline's internal request, and answers back.

The internal request is a chat completions body: ``system`` becomes the first system message,
``tool_use`` blocks become an assistant's ``tool_calls``, ``tool_result`` blocks become ``tool``
messages, ``tools`` with ``input_schema`` become functions, ``tool_choice`` ``any`` becomes
``required``. The answer's events (:mod:`hivemind_gateway.openai.events`) become content blocks.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

from hivemind_common.errors import Invalid, part_text, shape_errors_are_invalid
from hivemind_gateway.openai.events import (
    Event,
    Finished,
    ReasoningDelta,
    TextDelta,
    ToolArgs,
    ToolStart,
    with_stream_and_options,
)

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def stop_fields(finished: Finished) -> dict[str, Any]:
    """``stop_reason`` and ``stop_sequence`` of a Messages answer."""
    if finished.stop_sequence is not None and finished.reason in (None, "stop"):
        return {"stop_reason": "stop_sequence", "stop_sequence": finished.stop_sequence}
    return {"stop_reason": STOP_REASONS.get(finished.reason or "stop", "end_turn"),
            "stop_sequence": None}  # fmt: skip


# Claude Code opens its system prompt with a per-request attribution line; it would defeat
# prompt reuse (and means nothing to a local model), so it is dropped
_ATTRIBUTION = re.compile(r"^x-anthropic-billing-header:[^\n]*\n?")


def new_message_id() -> str:
    return "msg_" + secrets.token_hex(12)


def _text_of(content: Any, where: str) -> str:
    """The text of a string or of a list of text blocks (other blocks are a 400)."""
    if isinstance(content, str):
        return content
    texts = []
    for i, block in enumerate(content or []):
        if block.get("type") != "text":
            raise Invalid(
                f"a {block.get('type')!r} block is not supported here by a text-only model",
                param=f"{where}[{i}]",
            )
        texts.append(part_text(block, "text", f"{where}[{i}]"))
    return "\n".join(texts)


def system_text(system: Any) -> str:
    """The system prompt as one text, without Claude Code's per-request attribution line."""
    if isinstance(system, list):
        system = [
            b
            for b in system
            if not _ATTRIBUTION.match(str(b.get("text", ""))) or b.get("type") != "text"
        ]
    text = _text_of(system, "system") if system else ""
    return _ATTRIBUTION.sub("", text, count=1).lstrip("\n")


def _user_messages(content: Any, i: int) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    out: list[dict[str, Any]] = []
    texts: list[str] = []
    for j, block in enumerate(content):
        kind = block.get("type")
        if kind == "tool_result":
            result = block.get("content")
            text = "" if result is None else _text_of(result, f"messages[{i}].content[{j}]")
            if block.get("is_error"):
                text = f"Error: {text}"
            out.append({"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": text})
        elif kind == "text":
            texts.append(part_text(block, "text", f"messages[{i}].content[{j}]"))
        else:
            raise Invalid(
                f"a {kind!r} block is not supported by a text-only model",
                param=f"messages[{i}].content[{j}]",
            )
    if texts:
        out.append({"role": "user", "content": "\n".join(texts)})
    return out


def _assistant_message(content: Any, i: int) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        kind = block.get("type")
        if kind == "text":
            texts.append(part_text(block, "text", f"messages[{i}].content[{j}]"))
        elif kind == "thinking":
            thinking.append(part_text(block, "thinking", f"messages[{i}].content[{j}]"))
        elif kind == "redacted_thinking":
            continue
        elif kind == "tool_use":
            arguments = json.dumps(block.get("input") or {})
            fn = {"name": block.get("name"), "arguments": arguments}
            calls.append({"id": block.get("id"), "type": "function", "function": fn})
        else:
            raise Invalid(
                f"a {kind!r} block is not supported in an assistant turn",
                param=f"messages[{i}].content[{j}]",
            )
    message: dict[str, Any] = {"role": "assistant", "content": "\n".join(texts) or None}
    if thinking:
        message["reasoning_content"] = "\n".join(thinking)
    if calls:
        message["tool_calls"] = calls
    return message


def _tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    out = []
    for tool in tools or []:
        if "input_schema" not in tool:
            continue  # Anthropic's server tools (web search, ...) are not ours to run
        fn = {"name": tool.get("name"), "parameters": tool["input_schema"]}
        if tool.get("description"):
            fn["description"] = tool["description"]
        out.append({"type": "function", "function": fn})
    return out or None


def _tool_choice(choice: dict[str, Any] | None) -> tuple[Any, bool | None]:
    """(chat tool_choice, parallel_tool_calls) for Anthropic's ``tool_choice``."""
    if not choice:
        return None, None
    parallel = False if choice.get("disable_parallel_tool_use") else None
    kind = choice.get("type")
    if kind == "any":
        return "required", parallel
    if kind == "tool":
        return {"type": "function", "function": {"name": choice.get("name")}}, parallel
    if kind in ("auto", "none"):
        return kind, parallel
    raise Invalid("tool_choice type is auto, any, tool or none", param="tool_choice.type")


@shape_errors_are_invalid
def chat_payload(body: dict[str, Any], model: str) -> dict[str, Any]:
    """The chat completions body for a Messages body (``model`` is the local one)."""
    messages: list[dict[str, Any]] = []
    system = system_text(body.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    for i, msg in enumerate(body.get("messages") or []):
        if msg["role"] == "user":
            messages += _user_messages(msg.get("content"), i)
        elif msg["role"] == "system":
            text = _text_of(msg.get("content"), f"messages[{i}].content")
            messages.append({"role": "system", "content": text})
        else:
            messages.append(_assistant_message(msg.get("content"), i))
    if not messages:
        raise Invalid("messages: at least one message is required", param="messages")
    payload: dict[str, Any] = {"model": model, "messages": messages}
    last = messages[-1]
    if last["role"] == "assistant" and not last.get("tool_calls") and last.get("content"):
        payload["continue_final_message"] = True  # a prefill: the answer goes on from it
    if "max_tokens" in body:
        payload["max_tokens"] = body["max_tokens"]
    for ours, theirs in (("temperature", "temperature"), ("top_p", "top_p"), ("top_k", "top_k")):
        if body.get(theirs) is not None:
            payload[ours] = body[theirs]
    if body.get("stop_sequences"):
        payload["stop"] = body["stop_sequences"]
    tools = _tools(body.get("tools"))
    choice, parallel = _tool_choice(body.get("tool_choice"))
    if tools:
        payload["tools"] = tools
        if choice is not None:
            payload["tool_choice"] = choice
        if parallel is not None:
            payload["parallel_tool_calls"] = parallel
    return with_stream_and_options(body, payload)


def tool_input(arguments: str) -> dict[str, Any]:
    """A tool call's arguments as the object Anthropic's ``input`` is: what is not a JSON
    object (plain text a model wrote, a list, a number) comes as ``{"_raw": <text>}``, never
    dropped, and never a value the official client fails to parse."""
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        value = None
    return value if isinstance(value, dict) else {"_raw": arguments}


def message_from_events(events: list[Event], *, model: str) -> dict[str, Any]:
    """A whole Messages answer from the pipeline's events."""
    blocks: list[dict[str, Any]] = []
    calls: dict[int, dict[str, Any]] = {}
    args: dict[int, str] = {}
    finished = Finished(None)
    for event in events:
        if isinstance(event, ReasoningDelta):
            blocks.append({"type": "thinking", "thinking": event.text, "signature": ""})
        elif isinstance(event, TextDelta):
            if blocks and blocks[-1]["type"] == "text":
                blocks[-1]["text"] += event.text
            else:
                blocks.append({"type": "text", "text": event.text})
        elif isinstance(event, ToolStart):
            calls[event.index] = {"type": "tool_use", "id": event.id, "name": event.name}
            blocks.append(calls[event.index])
        elif isinstance(event, ToolArgs):
            args[event.index] = args.get(event.index, "") + event.piece
        elif isinstance(event, Finished):
            finished = event
    for index, block in calls.items():
        block["input"] = tool_input(args.get(index, ""))
    return {
        "id": new_message_id(),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        **stop_fields(finished),
        "usage": {
            "input_tokens": finished.prompt_tokens,
            "output_tokens": finished.completion_tokens,
        },
    }
