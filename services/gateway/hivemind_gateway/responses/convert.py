"""OpenAI Responses requests to the chat pipeline's internal request, and answers back.

Stateless: ``store: true`` and ``previous_response_id`` are a clear 400 (nothing is kept).
``input`` (a string or items: messages, ``function_call``, ``function_call_output``) and
``instructions`` become chat messages; function ``tools`` become chat tools; ``text.format``
becomes ``response_format``. The answer's events become output items.
"""

from __future__ import annotations

import secrets
import time
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

_TEXT_PARTS = frozenset({"input_text", "output_text", "text"})


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def _text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    texts = []
    for j, part in enumerate(content or []):
        if part.get("type") not in _TEXT_PARTS:
            raise Invalid(
                f"a {part.get('type')!r} part is not supported by a text-only model",
                param=f"{where}[{j}]",
            )
        texts.append(part_text(part, "text", f"{where}[{j}]"))
    return "\n".join(texts)


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if body.get("instructions"):
        out.append({"role": "system", "content": body["instructions"]})
    items = body.get("input")
    if isinstance(items, str):
        return [*out, {"role": "user", "content": items}]
    for i, item in enumerate(items or []):
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role", "user")
            out.append({"role": role, "content": _text(item.get("content"), f"input[{i}].content")})
        elif kind == "function_call":
            call = {
                "id": item.get("call_id"),
                "type": "function",
                "function": {"name": item.get("name"), "arguments": item.get("arguments", "")},
            }
            last = out[-1] if out else None
            if last and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)  # parallel calls: one assistant turn
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            text = output if isinstance(output, str) else _text(output, f"input[{i}].output")
            out.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": text})
        elif kind == "reasoning":
            continue  # our own reasoning from an earlier turn: not sent back to the model
        else:
            raise Invalid(f"input items of type {kind!r} are not supported", param=f"input[{i}]")
    return out


def _tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """Function tools as chat tools. Hosted tools (``web_search``, ...), ``namespace`` groups and
    ``custom`` tools are left out: the local model cannot call them (Codex CLI sends them all)."""
    out = []
    for tool in tools or []:
        if tool.get("type") != "function":
            continue
        fn = {k: tool[k] for k in ("name", "description", "parameters") if k in tool}
        out.append({"type": "function", "function": fn})
    return out or None


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    return choice


def _response_format(text: dict[str, Any] | None) -> dict[str, Any] | None:
    fmt = (text or {}).get("format")
    if not fmt or fmt.get("type") == "text":
        return None
    if fmt.get("type") == "json_schema":
        spec = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"type": "json_schema", "json_schema": spec}
    return {"type": fmt.get("type")}


def check_stateless(body: dict[str, Any]) -> None:
    if body.get("store") is True:
        raise Invalid(
            "store: true is not supported: this server keeps no responses; send store: false",
            param="store",
            code="unsupported_parameter",
        )
    if body.get("previous_response_id"):
        raise Invalid(
            "previous_response_id is not supported: this server keeps no responses; "
            "send the whole conversation in 'input'",
            param="previous_response_id",
            code="unsupported_parameter",
        )


@shape_errors_are_invalid
def chat_payload(body: dict[str, Any]) -> dict[str, Any]:
    """The chat completions body for a Responses body."""
    check_stateless(body)
    messages = _messages(body)
    if not messages:
        raise Invalid("input is empty", param="input")
    payload: dict[str, Any] = {"model": body["model"], "messages": messages}
    for key in ("temperature", "top_p", "parallel_tool_calls"):
        if body.get(key) is not None:
            payload[key] = body[key]
    if body.get("max_output_tokens"):
        payload["max_tokens"] = body["max_output_tokens"]
    tools = _tools(body.get("tools"))
    if tools:
        payload["tools"] = tools
        if body.get("tool_choice") is not None:
            payload["tool_choice"] = _tool_choice(body["tool_choice"])
    response_format = _response_format(body.get("text"))
    if response_format:
        payload["response_format"] = response_format
    return with_stream_and_options(body, payload)


def usage(finished: Finished) -> dict[str, Any]:
    return {
        "input_tokens": finished.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": finished.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": finished.prompt_tokens + finished.completion_tokens,
    }


def response_shell(body: dict[str, Any], rid: str, status: str) -> dict[str, Any]:
    """The fields of a response object that do not depend on the answer."""
    return {
        "id": rid,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": body["model"],
        "output": [],
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "max_output_tokens": body.get("max_output_tokens"),
        "instructions": body.get("instructions"),
        "text": body.get("text") or {"format": {"type": "text"}},
        "store": False,
        "metadata": body.get("metadata") or {},
        "error": None,
        "incomplete_details": None,
        "usage": None,
    }


def finish_shell(shell: dict[str, Any], finished: Finished) -> dict[str, Any]:
    """Status, incomplete details and usage once the answer has ended."""
    cut = finished.reason == "length"
    return {
        **shell,
        "status": "incomplete" if cut else "completed",
        "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
        "usage": usage(finished),
    }


def message_item(text: str, status: str = "completed") -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": []}
    return {
        "type": "message",
        "id": new_id("msg"),
        "status": status,
        "role": "assistant",
        "content": [] if status == "in_progress" else [part],
    }


def call_item(call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": new_id("fc"),
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def response_from_events(body: dict[str, Any], events: list[Event]) -> dict[str, Any]:
    """A whole Responses answer from the pipeline's events."""
    text = ""
    calls: dict[int, list[str]] = {}
    finished = Finished(None)
    for event in events:
        if isinstance(event, TextDelta):
            text += event.text
        elif isinstance(event, ToolStart):
            calls[event.index] = [event.id, event.name, ""]
        elif isinstance(event, ToolArgs) and event.index in calls:
            calls[event.index][2] += event.piece
        elif isinstance(event, Finished):
            finished = event
        elif isinstance(event, ReasoningDelta):
            continue
    output: list[dict[str, Any]] = []
    if text:
        output.append(message_item(text))
    for i in sorted(calls):
        call_id, name, arguments = calls[i]
        output.append(call_item(call_id, name, arguments, status="completed"))
    if output and finished.reason == "length":  # cut off: the item being written is too
        output[-1]["status"] = "incomplete"
    shell = response_shell(body, new_id("resp"), "completed")
    return {**finish_shell(shell, finished), "output": output}
