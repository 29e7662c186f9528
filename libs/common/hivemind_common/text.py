"""Text that callers send: one rule for what a string may hold, and the field types that apply it.

A string may hold any Unicode scalar value except lone surrogates (they cannot be encoded as
UTF-8, so Redis, JSON and a prompt all choke on them) and control characters other than tab,
newline and carriage return (NUL truncates C strings; the rest are never meant as text).

Request bodies derive from :class:`InputModel`, which checks every string in the body it is
given, declared fields and passed-through extras alike, so a new route cannot forget; single
fields (MCP tool arguments, query parameters) use :data:`SafeText` or :data:`Text`.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field, StringConstraints, model_validator
from pydantic_core import PydanticCustomError

# C0 controls except \t \n \r, DEL and the C1 controls, and every surrogate code point
_BAD_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
MAX_DEPTH = 64  # nesting of a JSON body walked for strings
# integers a body may hold: int64's range (a seed, an id); beyond it a number is no longer one
# that any field means, and it would not survive a float (an overflow where it is read as one)
MAX_INT = 2**63 - 1


def text_problem(value: str) -> str | None:
    """Why ``value`` is not acceptable text, or None when it is."""
    found = _BAD_CHAR.search(value)
    if found is None:
        return None
    code = ord(found.group())
    what = "a lone surrogate" if 0xD800 <= code <= 0xDFFF else "the control character"
    return f"contains {what} U+{code:04X} at position {found.start()}"


def check_text(value: str) -> str:
    """``value`` itself, or ``ValueError`` saying which character is refused and where."""
    problem = text_problem(value)
    if problem is not None:
        raise ValueError(f"text {problem}")
    return value


def check_not_blank(value: str) -> str:
    """Acceptable text that is not only whitespace."""
    check_text(value)
    if not value.strip():
        raise ValueError("text must not be empty or only whitespace")
    return value


def find_bad_string(value: Any, path: tuple[str | int, ...] = ()) -> tuple[str, str] | None:
    """A string (keys included) in a JSON-like value that is not acceptable text, or a number
    that is not a JSON number (NaN, Infinity, an integer beyond int64), or None.

    Answers ``(dotted path, problem)``; the strings of one object or array are checked before
    the ones nested in it. Scalars cost no more than a type check (a prompt of a million token
    ids stays cheap); a body nested deeper than ``MAX_DEPTH`` is refused as a whole.
    """
    if isinstance(value, str):
        problem = text_problem(value)
        return (_dotted(path), f"text {problem}") if problem is not None else None
    if isinstance(value, float) and not math.isfinite(value):
        return _dotted(path), "not a finite number"
    if not isinstance(value, dict | list):
        return None
    pending: list[tuple[Any, tuple[str | int, ...]]] = [(value, path)]
    while pending:
        item, where = pending.pop()
        if len(where) > MAX_DEPTH:
            return _dotted(where), f"nested deeper than {MAX_DEPTH} levels"
        if isinstance(item, dict):
            for key in item:
                if isinstance(key, str) and (problem := text_problem(key)) is not None:
                    return _dotted((*where, key)), f"the name of this field {problem}"
            pairs: Any = item.items()
        else:
            pairs = enumerate(item)
        nested = []
        for key, sub in pairs:
            kind = type(sub)  # exact types: what a JSON parser makes; cheap per item
            if kind is str:
                if (problem := text_problem(sub)) is not None:
                    return _dotted((*where, key)), f"text {problem}"
            elif kind is dict or kind is list:
                nested.append((sub, (*where, key)))
            elif kind is float and not math.isfinite(sub):  # NaN, Infinity: not JSON numbers
                return _dotted((*where, key)), "not a finite number"
            elif kind is int and not -MAX_INT <= sub <= MAX_INT:  # would not survive a float
                return _dotted((*where, key)), "a number too large"
        pending.extend(reversed(nested))
    return None


def _dotted(path: tuple[str | int, ...]) -> str:
    """The path as text that is itself safe to send back (a bad name is shown escaped)."""
    parts = (str(p) for p in path)
    return ".".join(p if text_problem(p) is None else ascii(p)[1:-1] for p in parts)


def check_json_text(value: Any) -> Any:
    """A JSON-like value whose every string is acceptable text; else the first bad one named."""
    bad = find_bad_string(value)
    if bad is not None:
        where, problem = bad
        raise PydanticCustomError(
            "invalid_text", "{field}: {problem}", {"field": where, "problem": problem}
        )
    return value


class InputModel(BaseModel):
    """Base of request bodies: every string in the input is checked before the fields are.

    The error names the field by its dotted path (``messages.0.content``); the error handlers
    read it from the error's ``field`` context, so the answer's ``param`` names it too.
    """

    @model_validator(mode="before")
    @classmethod
    def _strings_are_text(cls, data: Any) -> Any:
        return check_json_text(data)


# Terminal output pasted or returned by tools carries colour and title escapes (CSI ... final
# byte; OSC ... BEL or ST); in a conversation they are noise to the model, never meaning.
_TERMINAL_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?")
_CLEANABLE = re.compile("[\x01-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
CONVERSATION_FIELDS = frozenset({"messages", "system", "input", "instructions"})
"""Top-level fields of chat bodies that hold conversation text (every chat wire format)."""


def clean_conversation_text(value: str) -> str:
    """Conversation text as a model should see it: terminal escape sequences and control
    characters other than tab, newline and carriage return removed. NUL and lone surrogates are
    left in, for the text rule to refuse: they mean a broken client, not pasted output."""
    if _CLEANABLE.search(value) is None:
        return value
    return _CLEANABLE.sub("", _TERMINAL_ESCAPE.sub("", value))


def _cleaned(value: Any, depth: int = 0) -> Any:
    """``value`` with every string in it cleaned; the same object where nothing changed."""
    if isinstance(value, str):
        return clean_conversation_text(value)
    if depth > MAX_DEPTH:
        return value  # the text rule refuses it next
    if isinstance(value, dict):
        out = {k: _cleaned(v, depth + 1) for k, v in value.items()}
        return value if all(out[k] is value[k] for k in value) else out
    if isinstance(value, list) and value and not isinstance(value[0], int | float):
        items = [_cleaned(v, depth + 1) for v in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return value


class ConversationInputModel(InputModel):
    """Chat bodies (chat completions, Messages, Responses, learning samples): control characters
    that terminal output and tool results carry are cleaned from the conversation fields
    (:data:`CONVERSATION_FIELDS`) instead of refusing the chat; everything else in the body, and
    NUL or lone surrogates anywhere, still meets the text rule and a 400 naming the field."""

    @model_validator(mode="before")
    @classmethod
    def _strings_are_text(cls, data: Any) -> Any:
        if isinstance(data, dict) and CONVERSATION_FIELDS.intersection(data):
            data = {k: _cleaned(v) if k in CONVERSATION_FIELDS else v for k, v in data.items()}
        return check_json_text(data)


SafeText = Annotated[str, StringConstraints(strict=True), AfterValidator(check_text)]
"""Any acceptable text, empty included."""

Text = Annotated[str, StringConstraints(strict=True, min_length=1), AfterValidator(check_not_blank)]
"""Acceptable text with something besides whitespace in it."""

JsonValue = Annotated[Any, AfterValidator(check_json_text)]
"""Any JSON value whose strings (keys too) are acceptable text."""

MAX_CHAT_MESSAGES = 2048
"""Most messages one chat request may carry (every chat wire format)."""

MAX_MESSAGE_CHARS = 1_000_000
"""Most characters in one message's text (a prompt, a completion prompt, an input to embed)."""

MAX_QUERY_CHARS = 4000
"""Longest search query; lexical scoring also reads no more of a chat's text than this."""

MAX_STOP_SEQUENCES = 16
"""Most stop sequences one request may name: each is checked on every generated token, so a
body of a million of them held the shared model for everyone (OpenAI allows 4)."""

MAX_STOP_CHARS = 500
"""Longest stop sequence."""

StopText = Annotated[str, StringConstraints(max_length=MAX_STOP_CHARS)]
StopList = Annotated[list[StopText], Field(max_length=MAX_STOP_SEQUENCES)]
"""Stop sequences as a list (Anthropic's ``stop_sequences``; OpenAI's ``stop`` takes one too)."""
StopField = StopText | StopList
"""OpenAI's ``stop``: one sequence or a list of them."""

SearchQuery = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=MAX_QUERY_CHARS),
    AfterValidator(check_not_blank),
]

__all__ = [
    "CONVERSATION_FIELDS",
    "MAX_CHAT_MESSAGES",
    "MAX_MESSAGE_CHARS",
    "MAX_QUERY_CHARS",
    "MAX_STOP_CHARS",
    "MAX_STOP_SEQUENCES",
    "ConversationInputModel",
    "InputModel",
    "JsonValue",
    "SafeText",
    "SearchQuery",
    "StopField",
    "StopList",
    "Text",
    "check_json_text",
    "check_not_blank",
    "check_text",
    "clean_conversation_text",
    "find_bad_string",
    "text_problem",
]
