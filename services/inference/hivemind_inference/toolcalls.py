"""Tool calls in a model's text: which family a chat template speaks, and an incremental parser.

Local coding models write their tool calls in one of a few shapes, fixed by their chat template:

- ``hermes`` (Qwen2.5, Hermes, many fine-tunes): ``<tool_call>{"name": ..., "arguments": ...}
  </tool_call>``, one block per call;
- ``llama3`` (Llama 3.1+ JSON tool calling): a bare ``{"name": ..., "parameters": ...}`` object
  (optionally after ``<|python_tag|>``), several separated by ``;``;
- ``mistral``: ``[TOOL_CALLS] [{"name": ..., "arguments": ...}, ...]``.

:class:`ToolCallParser` reads the generated text piece by piece and turns it into events:
content text, the start of a call (id and name) and the call's arguments as string pieces, so a
stream can relay a call while it is being written. The whole answer is parsed by the same code.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Literal

Family = Literal["hermes", "llama3", "mistral"]
FAMILIES: tuple[Family, ...] = ("hermes", "llama3", "mistral")

_HEAD = re.compile(
    r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"(?:arguments|parameters)"\s*:\s*'
)


def template_family(template: str | None) -> Family | None:
    """The tool-call family a chat template speaks, or None when it cannot render tools."""
    if not template or "tools" not in template:
        return None
    if "<tool_call>" in template:
        return "hermes"
    if "[TOOL_CALLS]" in template or "[AVAILABLE_TOOLS]" in template:
        return "mistral"
    if "<|start_header_id|>" in template or "<|python_tag|>" in template:
        return "llama3"
    return None


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


@dataclass
class Content:
    text: str


@dataclass
class CallStart:
    index: int
    id: str
    name: str


@dataclass
class CallArgs:
    index: int
    piece: str


Event = Content | CallStart | CallArgs


@dataclass
class _Call:
    """The JSON object of one call being read, character by character."""

    buf: str = ""  # text of the object until the arguments start
    depth: int = 0
    in_string: bool = False
    escaped: bool = False
    args_started: bool = False
    args_done: bool = False
    args_quoted: bool = False  # arguments sent as a JSON string: decoded at the end
    quoted: str = ""
    held_ws: str = ""
    started: bool = False
    rejected: bool = False  # a name no offered tool has: the object is the answer's text

    def step(self, ch: str) -> None:
        """Track strings and nesting depth over the whole object."""
        if self.in_string:
            if self.escaped:
                self.escaped = False
            elif ch == "\\":
                self.escaped = True
            elif ch == '"':
                self.in_string = False
        elif ch == '"':
            self.in_string = True
        elif ch in "{[":
            self.depth += 1
        elif ch in "}]":
            self.depth -= 1


@dataclass
class ToolCallParser:
    """Incremental parser of one generation; ``forced`` means the text is a call from its start."""

    family: Family
    forced: bool = False
    # the offered tools' names: an object naming anything else is plain text (a JSON answer
    # such as {"name": "Bob"} is not a call); None takes any name
    names: frozenset[str] | None = None
    events: list[Event] = field(default_factory=list)
    calls: int = 0
    _pending: str = ""  # text not yet decided on (a possible opener, or a call's head)
    _mode: str = "text"  # text | call | between
    _call: _Call | None = None
    _seen_text: bool = False
    _raw_call: str = ""  # everything of the current call, to fall back to as content

    def __post_init__(self) -> None:
        if self.forced:
            self._mode = "between"

    # --- input ----------------------------------------------------------------------------------
    def feed(self, text: str) -> list[Event]:
        """Consume a piece of generated text; return the events it completed."""
        self.events = []
        self._pending += text
        self._drain(final=False)
        return self.events

    def finish(self) -> list[Event]:
        """End of generation: flush what is left (an unfinished call becomes content)."""
        self.events = []
        self._drain(final=True)
        if (
            self._mode == "call"
            and self._call is not None
            and (not self._call.started or self._call.rejected)
        ):
            self._content(self._raw_call)
        elif self._call is not None and self._call.started and self._call.args_quoted:
            self._flush_quoted()
        self._call = None
        if self._pending and self._mode == "text":
            self._content(self._pending)
        self._pending = ""
        return self.events

    # --- states ---------------------------------------------------------------------------------
    def _drain(self, *, final: bool) -> None:
        while self._pending:
            before = (self._mode, len(self._pending))
            if self._mode == "text":
                self._text(final)
            elif self._mode == "between":
                self._between(final)
            else:
                self._in_call()
            if (self._mode, len(self._pending)) == before:
                return  # waiting for more text

    def _text(self, final: bool) -> None:
        opener, at = self._find_opener()
        if at < 0:
            keep = 0 if final else _partial_suffix(self._pending, self._openers())
            cut = len(self._pending) - keep
            if cut > 0:
                self._content(self._pending[:cut])
                self._pending = self._pending[cut:]
            return
        if at > 0:
            self._content(self._pending[:at])
        self._pending = self._pending[at + len(opener) :]
        self._mode = "between"

    def _between(self, final: bool) -> None:
        """After an opener or a finished call: skip separators, start the next call."""
        stripped = self._pending.lstrip(" \t\r\n,;")
        for closer in ("</tool_call>", "<tool_call>", "[TOOL_CALLS]", "<|python_tag|>", "["):
            if stripped.startswith(closer):
                stripped = stripped[len(closer) :].lstrip(" \t\r\n,;")
        if not stripped:
            self._pending = ""
            return
        if stripped.startswith("{"):
            self._pending = stripped
            self._call = _Call()
            self._raw_call = ""
            self._mode = "call"
            return
        closers = ("</tool_call>", "<tool_call>", "[TOOL_CALLS]")
        if not final and any(c.startswith(stripped) for c in closers):
            self._pending = stripped
            return
        if stripped.startswith("]"):
            stripped = stripped[1:]
            self._pending = stripped
            if not stripped:
                return
        # text after the calls is not part of any call: dropped once a call was made
        if self.calls:
            self._pending = ""
        else:
            self._pending = stripped
            self._mode = "text"

    def _in_call(self) -> None:
        call = self._call
        assert call is not None
        text, self._pending = self._pending, ""
        for i, ch in enumerate(text):
            self._raw_call += ch
            outer = call.depth == 1  # at the call object's own level before this character
            call.step(ch)
            if call.rejected:
                if call.depth == 0:  # the whole object was text after all
                    self._content(self._raw_call)
                    self._call = None
                    self._mode = "text"
                    self._pending = text[i + 1 :]
                    return
                continue
            if not call.started:
                call.buf += ch
                match = _HEAD.fullmatch(call.buf)
                if match and not call.in_string and call.depth == 1:
                    name = _decoded_name(match.group(1))
                    if self.names is not None and name not in self.names:
                        call.started = call.rejected = True
                        continue
                    self._start(call, name)
                elif call.depth == 0:  # the object ended before a recognisable head
                    self._whole_object(call.buf)
                    self._pending = text[i + 1 :]
                    return
                continue
            if call.depth == 0:  # the call's own closing brace
                self._end_call(call)
                self._pending = text[i + 1 :]
                return
            if call.args_done:
                continue
            if outer and not call.in_string and ch == ",":
                call.args_done = True  # other keys after the arguments are ignored
                continue
            if call.args_quoted:
                call.quoted += ch
                continue
            if not call.args_started:
                if ch.isspace():
                    continue
                call.args_started = True
                if ch == '"':
                    call.args_quoted = True
                    call.quoted = ch
                    continue
            if outer and not call.in_string and ch.isspace():
                call.held_ws += ch
                continue
            self._args(call.held_ws + ch)
            call.held_ws = ""

    # --- events ---------------------------------------------------------------------------------
    def _start(self, call: _Call, name: str) -> None:
        call.started = True
        self.events.append(CallStart(self.calls, new_call_id(), name))

    def _args(self, piece: str) -> None:
        if self.events and isinstance(self.events[-1], CallArgs):
            self.events[-1].piece += piece
        else:
            self.events.append(CallArgs(self.calls, piece))

    def _end_call(self, call: _Call) -> None:
        if call.args_quoted:
            self._flush_quoted()
        self.calls += 1
        self._call = None
        self._mode = "between"

    def _flush_quoted(self) -> None:
        call = self._call
        assert call is not None
        try:
            decoded = json.loads(call.quoted)
        except ValueError:
            decoded = call.quoted
        self._args(decoded if isinstance(decoded, str) else json.dumps(decoded))
        call.args_quoted = False

    def _whole_object(self, raw: str) -> None:
        """A call whose keys came in another order: parsed once complete."""
        try:
            obj = json.loads(raw)
        except ValueError:
            obj = None
        name = obj.get("name") if isinstance(obj, dict) else None
        if not isinstance(name, str) or (self.names is not None and name not in self.names):
            self._content(raw)
            self._call = None
            self._mode = "text"
            return
        args = obj.get("arguments", obj.get("parameters", {}))
        self.events.append(CallStart(self.calls, new_call_id(), name))
        self._args(args if isinstance(args, str) else json.dumps(args))
        self.calls += 1
        self._call = None
        self._mode = "between"

    def _content(self, text: str) -> None:
        if not text:
            return
        if self.events and isinstance(self.events[-1], Content):
            self.events[-1].text += text
        else:
            self.events.append(Content(text))
        self._seen_text = self._seen_text or bool(text.strip())

    # --- openers --------------------------------------------------------------------------------
    def _openers(self) -> tuple[str, ...]:
        if self.family == "hermes":
            return ("<tool_call>",)
        if self.family == "mistral":
            return ("[TOOL_CALLS]",)
        return ("<|python_tag|>",)

    def _find_opener(self) -> tuple[str, int]:
        best = ("", -1)
        for opener in self._openers():
            at = self._pending.find(opener)
            if at >= 0 and (best[1] < 0 or at < best[1]):
                best = (opener, at)
        if self.family == "llama3" and not self._seen_text and best[1] < 0:
            # Llama 3 writes a bare JSON object as its whole answer
            stripped = self._pending.lstrip()
            if stripped.startswith("{"):
                return "", len(self._pending) - len(stripped)
        return best


def _partial_suffix(text: str, openers: tuple[str, ...]) -> int:
    """Length of the longest end of ``text`` that could begin an opener (held back)."""
    best = 0
    for opener in openers:
        for n in range(min(len(opener) - 1, len(text)), 0, -1):
            if text.endswith(opener[:n]):
                best = max(best, n)
                break
    return best


def _decoded_name(raw: str) -> str:
    """A call's name as the model wrote it inside quotes (a bad escape is kept as written)."""
    try:
        name = json.loads(f'"{raw}"')
    except ValueError:
        return raw
    return name if isinstance(name, str) else raw


def parse_all(
    text: str,
    family: Family,
    *,
    forced: bool = False,
    names: frozenset[str] | None = None,
) -> tuple[str, list[dict[str, str]]]:
    """The whole answer: (content, calls as ``{id, name, arguments}``)."""
    parser = ToolCallParser(family, forced=forced, names=names)
    events = parser.feed(text) + parser.finish()
    content = "".join(e.text for e in events if isinstance(e, Content))
    calls: dict[int, dict[str, str]] = {}
    for e in events:
        if isinstance(e, CallStart):
            calls[e.index] = {"id": e.id, "name": e.name, "arguments": ""}
        elif isinstance(e, CallArgs):
            calls[e.index]["arguments"] += e.piece
    return content, [calls[i] for i in sorted(calls)]
