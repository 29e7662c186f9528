"""Grammars that force a chat's answer: a tool call, or JSON matching a response schema.

llama.cpp samples only tokens its grammar allows, so a forced answer is valid by construction,
whatever the model's size. Grammars are GBNF built by llama-cpp-python's JSON-schema converter.
Keywords the converter cannot enforce are refused with a 400 that names them (for a
``response_format`` schema); in tool parameters they are left to the model (agents' tool schemas
carry bounds such as ``minimum`` that a grammar cannot express, and refusing them would refuse
the agent).
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable
from typing import Any

from hivemind_common.errors import Invalid

# JSON-schema keywords the GBNF converter does not enforce
UNSUPPORTED_KEYWORDS = frozenset(
    {
        "not",
        "if",
        "then",
        "else",
        "patternProperties",
        "dependentRequired",
        "dependentSchemas",
        "dependencies",
        "uniqueItems",
        "multipleOf",
        "minProperties",
        "maxProperties",
        "contains",
        "minContains",
        "maxContains",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "propertyNames",
        "unevaluatedProperties",
        "unevaluatedItems",
    }
)
SUPPORTED_FORMATS = frozenset(
    {"date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3", "uuid4", "uuid5"}
)
_SCHEMA_MAPS = ("properties", "$defs", "definitions")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_ONES = ("items", "additionalProperties")


def unsupported_features(schema: Any, path: str = "#") -> list[str]:
    """Where ``schema`` uses what the grammar cannot enforce (``'minimum' at #/properties/n'``)."""
    found: list[str] = []
    if not isinstance(schema, dict):
        return found
    for key in sorted(UNSUPPORTED_KEYWORDS & schema.keys()):
        found.append(f"'{key}' at {path}")
    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt not in SUPPORTED_FORMATS:
        found.append(f"'format: {fmt}' at {path}")
    ref = schema.get("$ref")
    if isinstance(ref, str) and not ref.startswith("#"):
        found.append(f"a remote '$ref' ({ref}) at {path}")
    for key in _SCHEMA_MAPS:
        sub = schema.get(key)
        if isinstance(sub, dict):
            for name, value in sub.items():
                found += unsupported_features(value, f"{path}/{key}/{name}")
    for key in _SCHEMA_LISTS:
        sub = schema.get(key)
        if isinstance(sub, list):
            for i, value in enumerate(sub):
                found += unsupported_features(value, f"{path}/{key}/{i}")
    for key in _SCHEMA_ONES:
        found += unsupported_features(schema.get(key), f"{path}/{key}")
    return found


# A grammar spells out every repetition a schema bounds: maxLength 1e9 would be gigabytes.
MAX_SCHEMA_BOUND = 4096  # larger max* bounds are left to validation; larger min* are refused
MAX_GRAMMAR_CHARS = 1_000_000
_BOUNDS = ("maxLength", "minLength", "maxItems", "minItems", "maxProperties", "minProperties")


def _bounded(schema: Any, param: str, path: str = "#") -> Any:
    """``schema`` with repetition bounds a grammar can hold: a max over the limit is dropped
    (the grammar then allows any count), a min over it is a 400."""
    if isinstance(schema, list):
        return [_bounded(v, param, f"{path}/{i}") for i, v in enumerate(schema)]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key in _BOUNDS and isinstance(value, int | float) and value > MAX_SCHEMA_BOUND:
            if key.startswith("min"):
                raise Invalid(
                    f"{key!r} at {path} is over {MAX_SCHEMA_BOUND}: too large to enforce",
                    param=param,
                    code="unsupported_schema",
                )
            continue
        out[key] = _bounded(value, param, f"{path}/{key}")
    return out


# What a pattern may let the model write inside a JSON string: never a control character, a
# quote or a backslash bare (``_FORBIDDEN``); a negated class or ``.`` is read within printable
# ASCII (``_PRINTABLE``), which never allows more than the pattern does (Python's ``\S`` and
# ``[^\d]`` also refuse Unicode spaces and digits). Classes are written with every member as a
# ``\xHH`` escape, which the converter copies as it is and llama.cpp's grammar parser reads.
Ranges = list[tuple[int, int]]
_FORBIDDEN: Ranges = [(0x00, 0x1F), (0x22, 0x22), (0x5C, 0x5C)]
_PRINTABLE: Ranges = [(0x20, 0x7E)]
_SHORTHAND: dict[str, Ranges] = {
    "d": [(0x30, 0x39)],
    "w": [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)],
    "s": [(0x09, 0x0D), (0x20, 0x20)],
}
_CHAR_ESCAPES = {"n": 0x0A, "r": 0x0D, "t": 0x09, "f": 0x0C, "v": 0x0B, "a": 0x07}
_OCTAL = re.compile(r"0[0-7]{0,2}|[0-7]{3}")  # as Python reads \0, \041 (else a back-reference)
# {n}, {n,}, {,m}, {n,m} and {,} (Python reads it as {0,}); {} is two characters
_QUANTIFIER = re.compile(r"\{(\d+)(?:,(\d*))?\}|\{,(\d*)\}")
QUANTIFIER_MAX = 500  # llama.cpp parses {0,n} as n nested groups: 30,000 crashed it


class Unspellable(ValueError):
    """A pattern the grammar cannot hold as it means."""


def _merged(ranges: Ranges) -> Ranges:
    out: Ranges = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _minus(ranges: Ranges, taken: Ranges) -> Ranges:
    out = _merged(ranges)
    for tlo, thi in _merged(taken):
        kept: Ranges = []
        for lo, hi in out:
            if hi < tlo or lo > thi:
                kept.append((lo, hi))
                continue
            if lo < tlo:
                kept.append((lo, tlo - 1))
            if hi > thi:
                kept.append((thi + 1, hi))
        out = kept
    return out


def _escaped(cp: int) -> str:
    if cp < 0x80 and chr(cp).isalnum():
        return chr(cp)
    if cp < 0x100:
        return f"\\x{cp:02X}"
    return f"\\u{cp:04X}" if cp < 0x10000 else f"\\U{cp:08X}"


def _class(ranges: Ranges, *, negated: bool = False) -> str:
    """A GBNF class for ``ranges`` (their complement within printable ASCII when ``negated``),
    less what a JSON string cannot hold bare; an empty one is :class:`Unspellable`."""
    allowed = _minus(_PRINTABLE, ranges) if negated else ranges
    allowed = _minus(allowed, _FORBIDDEN)
    if not allowed:
        raise Unspellable("a class with nothing a JSON string can hold bare")
    items = (_escaped(lo) if lo == hi else f"{_escaped(lo)}-{_escaped(hi)}" for lo, hi in allowed)
    return "[" + "".join(items) + "]"


_UNQUOTED = _class(_PRINTABLE)  # one character that needs no escape in JSON


def _escape_at(pattern: str, i: int) -> tuple[Ranges | None, int | None, int]:
    """The escape at ``pattern[i]`` (a backslash): (shorthand ranges, or None; its code point,
    or None; the index after it)."""
    nxt = pattern[i + 1] if i + 1 < len(pattern) else ""
    if nxt.lower() in _SHORTHAND:
        ranges = _SHORTHAND[nxt.lower()]
        return (ranges if nxt.islower() else _minus(_PRINTABLE, ranges)), None, i + 2
    if nxt in _CHAR_ESCAPES:
        return None, _CHAR_ESCAPES[nxt], i + 2
    octal = _OCTAL.match(pattern, i + 1)
    if octal is not None:
        return None, int(octal.group(), 8), octal.end()
    if nxt == "x" and re.fullmatch(r"[0-9A-Fa-f]{2}", pattern[i + 2 : i + 4]):
        return None, int(pattern[i + 2 : i + 4], 16), i + 4
    if nxt == "u" and re.fullmatch(r"[0-9A-Fa-f]{4}", pattern[i + 2 : i + 6]):
        return None, int(pattern[i + 2 : i + 6], 16), i + 6
    if nxt and not nxt.isalnum():
        return None, ord(nxt), i + 2
    raise Unspellable(f"the escape \\{nxt}")


def _read_class(pattern: str, i: int) -> tuple[str, int]:
    """The class opening at ``pattern[i]`` as GBNF, and the index after it."""
    negated = pattern.startswith("[^", i)
    j = i + (2 if negated else 1)
    members: Ranges = []
    first = j
    while j < len(pattern) and not (pattern[j] == "]" and j > first):
        cp: int | None
        if pattern.startswith("\\b", j):  # in a class, \b is a backspace
            cp, j = 0x08, j + 2
        elif pattern[j] == "\\":
            shorthand, cp, j = _escape_at(pattern, j)
            if shorthand is not None:
                members += shorthand
                continue
        else:
            cp, j = ord(pattern[j]), j + 1
        assert cp is not None
        if pattern[j : j + 1] == "-" and j + 1 < len(pattern) and pattern[j + 1] != "]":
            if pattern[j + 1] == "\\":
                shorthand, hi, j = _escape_at(pattern, j + 1)
                if shorthand is not None or hi is None:
                    raise Unspellable("a range ending in a class shorthand")
            else:
                hi, j = ord(pattern[j + 1]), j + 2
            members.append((cp, hi))
        else:
            members.append((cp, cp))
    if j >= len(pattern):
        raise Unspellable("a class that never closes")
    return _class(members, negated=negated), j + 1


def _check_bound(match: re.Match[str]) -> None:
    if any(n and int(n) > QUANTIFIER_MAX for n in match.groups()):
        raise Unspellable(f"a repetition over {QUANTIFIER_MAX}: {match.group()}")


def grammar_pattern(pattern: str) -> str:
    r"""``pattern`` (a JSON Schema regex: unanchored, a search) as the converter takes it, never
    allowing more than it and nothing a JSON string cannot hold bare: each top-level
    alternative anchored as it is meant (``^a|b$``: starts with a, or ends with b), every class,
    shorthand (``\d``) and ``.`` written out as a class of ``\xHH`` members (a negated one, or
    ``.``, within printable ASCII), ``(?:`` as a plain group, a lazy ``?`` dropped (it does not
    change what matches), a ``]`` or ``}`` that closes nothing as a class (the converter looped
    forever on one). :class:`Unspellable` for what it cannot hold: an invalid regex, an anchor
    inside, a character the value would have to escape, ``\b``, a possessive quantifier, a
    repetition over :data:`QUANTIFIER_MAX`."""
    try:
        with warnings.catch_warnings():  # "possible nested set" and the like: still valid
            warnings.simplefilter("ignore")
            re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        raise Unspellable(f"not a valid regular expression: {exc}") from exc
    alternatives: list[list[str]] = [[]]
    out = alternatives[0]
    i, depth = 0, 0
    while i < len(pattern):
        c = pattern[i]
        quantified = False
        if c == "\\":  # a shorthand, or a character meant as itself: a class either way
            shorthand, cp, i = _escape_at(pattern, i)
            if shorthand is None:
                assert cp is not None
                shorthand = [(cp, cp)]
            out.append(_class(shorthand))
            continue
        if c == "[":
            text, i = _read_class(pattern, i)
            out.append(text)
            continue
        if c == "(":
            depth += 1
            if pattern.startswith("(?:", i):
                out.append("(")
                i += 3
                continue
            if pattern.startswith("(?", i):
                raise Unspellable("a group other than (...) and (?:...)")
        elif c == ")":
            depth -= 1
        elif c == "|" and depth == 0:
            out = []
            alternatives.append(out)
            i += 1
            continue
        elif c == "^" and (out or depth):
            raise Unspellable("an anchor (^) inside the pattern")
        elif c == "$" and ((i + 1 < len(pattern) and pattern[i + 1] != "|") or depth):
            raise Unspellable("an anchor ($) inside the pattern")
        elif c == ".":
            c = _UNQUOTED
        elif c in "*+?":
            quantified = True
        elif c == "{":
            bound = _QUANTIFIER.match(pattern, i)
            if bound is not None:  # a repetition: copied whole
                _check_bound(bound)
                c, quantified = bound.group(), True
                i = bound.end() - 1  # the common step below moves past it
            else:
                c = _class([(0x7B, 0x7B)])
        elif c in "]}":  # closes nothing
            c = _class([(ord(c), ord(c))])
        elif ord(c) < 0x20 or c in '"\\':
            raise Unspellable("a character the value would have to escape")
        out.append(c)
        i += 1
        if quantified and i < len(pattern):
            if pattern[i] == "?":  # lazy: the same strings match
                i += 1
            elif pattern[i] == "+":
                raise Unspellable("a possessive quantifier")
    parts = []
    for alternative in alternatives:
        body = "".join(alternative)
        lead, trail = body.startswith("^"), body.endswith("$")
        core = body[1 if lead else 0 : len(body) - 1 if trail else len(body)]
        parts.append(f"{'' if lead else _UNQUOTED + '*'}{core}{'' if trail else _UNQUOTED + '*'}")
    return "^(" + "|".join(f"({p})" if len(parts) > 1 else p for p in parts) + ")$"


# what constrains a value of one type only: a list of types gives each of its branches its own
_TYPED_KEYWORDS: dict[str, frozenset[str]] = {
    "object": frozenset(
        {"properties", "required", "additionalProperties", "minProperties", "maxProperties",
         "patternProperties", "propertyNames", "dependentRequired", "dependentSchemas",
         "unevaluatedProperties"}
    ),
    "array": frozenset(
        {"items", "prefixItems", "minItems", "maxItems", "uniqueItems", "contains",
         "minContains", "maxContains", "unevaluatedItems"}
    ),
    "string": frozenset({"pattern", "minLength", "maxLength", "format"}),
    "number": frozenset(
        {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}
    ),
}  # fmt: skip
_TYPED_KEYWORDS["integer"] = _TYPED_KEYWORDS["number"]
_ALL_TYPED = frozenset().union(*_TYPED_KEYWORDS.values())
# keywords that say what a value is; a schema with none of them (``{"title": "D"}``, as Pydantic
# writes an ``Any`` field) allows any JSON value, which the converter refused as unrecognised
_SHAPING = frozenset(
    {"type", "enum", "const", "anyOf", "oneOf", "allOf", "not", "$ref"} | _ALL_TYPED
)
_ANY_VALUE = {
    "anyOf": [{"type": t} for t in ("string", "number", "boolean", "null", "object", "array")]
}
_COMBINED = ("anyOf", "oneOf", "allOf", "not", "$ref", "enum", "const")


def _for_grammar(schema: Any, param: str, path: str = "#", *, patterns: bool = True) -> Any:
    """``schema`` as the converter can take it, never allowing more: a list of types as
    ``anyOf``, each branch with the keywords of its own type (the converter kept only the
    types, dropping an enum or properties beside them; each keyword goes to one branch, so
    nested lists do not multiply the schema), patterns through :func:`grammar_pattern` (or
    dropped, ``patterns=False``), a schema with nothing that shapes a value as any value. An
    enum or const string that needs escaping in JSON, or an unspellable pattern, is a 400."""
    if isinstance(schema, list):
        return [
            _for_grammar(v, param, f"{path}/{i}", patterns=patterns) for i, v in enumerate(schema)
        ]
    if not isinstance(schema, dict):
        return schema
    for key in ("enum", "const"):
        values = schema.get(key) if key == "enum" else [schema.get(key)]
        for value in values if isinstance(values, list) else []:
            if isinstance(value, str) and any(ch in '"\\' or ord(ch) < 32 for ch in value):
                raise Invalid(
                    f"{key!r} at {path} holds a string with a quote, a backslash or a control "
                    "character, which the grammar cannot spell",
                    param=param,
                    code="unsupported_schema",
                )
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "pattern" and isinstance(value, str):
            if patterns:
                try:
                    out[key] = grammar_pattern(value)
                except Unspellable as exc:
                    raise Invalid(
                        f"the pattern at {path} cannot be enforced by a grammar: {exc}",
                        param=param,
                        code="unsupported_schema",
                    ) from exc
        elif key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {
                k: _for_grammar(v, param, f"{path}/{key}/{k}", patterns=patterns)
                for k, v in value.items()
            }
        elif key in _SCHEMA_LISTS or key in _SCHEMA_ONES:
            out[key] = _for_grammar(value, param, f"{path}/{key}", patterns=patterns)
        else:
            out[key] = value
    if not _SHAPING & out.keys():
        kept = {k: v for k, v in out.items() if k in ("$defs", "definitions")}
        return {**_ANY_VALUE, **kept}
    types = out.get("type")
    if isinstance(types, list):
        rest = {k: v for k, v in out.items() if k != "type"}
        if any(k in rest for k in _COMBINED):  # they constrain it already: the list is dropped
            return rest
        defs = {k: rest.pop(k) for k in ("$defs", "definitions") if k in rest}
        branches = []
        for t in types:
            own = _TYPED_KEYWORDS.get(t, frozenset())
            branch = {k: v for k, v in rest.items() if k not in _ALL_TYPED or k in own}
            branches.append({**branch, "type": t})
        return {"anyOf": branches, **defs}
    return out


def _has_pattern(schema: Any) -> bool:
    if isinstance(schema, list):
        return any(_has_pattern(v) for v in schema)
    if isinstance(schema, dict):
        return "pattern" in schema or any(_has_pattern(v) for v in schema.values())
    return False


Loads = Callable[[str], bool]


def _to_gbnf(
    schema: dict[str, Any],
    *,
    param: str,
    what: str,
    loads: Loads | None = None,
    lenient: bool = False,
    **kw: Any,
) -> str:
    """GBNF for a schema, or a 400 on ``param``: any failure of the converter (it raises many
    kinds on schemas it does not handle), a grammar too large to load, or one ``loads`` (the
    model's own grammar parser) refuses is the caller's. ``lenient`` (tool parameters): when
    the patterns are what fails, they are left to the model instead."""
    try:
        return _converted(_for_grammar(schema, param), param=param, what=what, loads=loads, **kw)
    except Invalid:
        if not (lenient and _has_pattern(schema)):
            raise
    plain = _for_grammar(schema, param, patterns=False)
    return _converted(plain, param=param, what=what, loads=loads, **kw)


def _converted(
    schema: dict[str, Any], *, param: str, what: str, loads: Loads | None, **kw: Any
) -> str:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        gbnf = json_schema_to_gbnf(json.dumps(_bounded(schema, param)), **kw)
    except Invalid:
        raise
    except Exception as exc:  # the converter's own errors: the schema is what it cannot take
        raise Invalid(
            f"{what} cannot be turned into a grammar: {type(exc).__name__}: {exc}"[:500],
            param=param,
            code="unsupported_schema",
        ) from exc
    if len(gbnf) > MAX_GRAMMAR_CHARS:
        raise Invalid(
            f"{what} makes a grammar of {len(gbnf)} characters (at most {MAX_GRAMMAR_CHARS})",
            param=param,
            code="unsupported_schema",
        )
    if loads is not None and not loads(gbnf):
        # llama.cpp given a grammar it cannot parse added a null sampler and crashed (SIGSEGV)
        raise Invalid(
            f"{what} makes a grammar llama.cpp cannot load (a regex escape or a literal it "
            "cannot spell)",
            param=param,
            code="unsupported_schema",
        )
    return gbnf


def grammar_loader(llama: Any) -> Loads | None:
    """Whether a GBNF text loads in ``llama``'s grammar parser (its own vocabulary), or None
    for a copy that has no llama.cpp model to ask."""
    import llama_cpp

    model = getattr(getattr(llama, "_model", None), "model", None)
    if model is None:
        return None
    vocab = llama_cpp.llama_model_get_vocab(model)

    def loads(gbnf: str) -> bool:
        sampler = llama_cpp.llama_sampler_init_grammar(vocab, gbnf.encode(), b"root")
        if not sampler:
            return False
        llama_cpp.llama_sampler_free(sampler)
        return True

    return loads


def schema_to_gbnf(schema: dict[str, Any], *, param: str, loads: Loads | None = None) -> str:
    """GBNF text for a JSON schema; a schema the converter refuses is a 400 on ``param``."""
    return _to_gbnf(schema, param=param, what="this JSON schema", loads=loads)


def check_schema(schema: dict[str, Any], param: str) -> None:
    """Invalid (a 400) unless ``schema`` is valid JSON Schema: the answer is checked against
    it at the end, where an invalid one ("required": ["a", "a"]) raised a SchemaError, a 500
    after the whole generation."""
    import jsonschema

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise Invalid(
            f"not a valid JSON Schema: {exc.message}", param=param, code="invalid_schema"
        ) from exc
    except (TypeError, AttributeError, ValueError, LookupError, RecursionError) as exc:
        # "$schema": [] or 5 (validator_for reads it as a URI) raised past SchemaError: a 500
        raise Invalid(
            f"not a valid JSON Schema ({type(exc).__name__})", param=param, code="invalid_schema"
        ) from exc


def response_schema(response_format: dict[str, Any] | None) -> tuple[dict[str, Any] | None, bool]:
    """(schema to enforce, strict) for a ``response_format``; (None, False) for plain text."""
    if not response_format:
        return None, False
    kind = response_format.get("type")
    if kind in (None, "text"):
        return None, False
    if kind == "json_object":
        return {"type": "object"}, False
    if kind != "json_schema":
        raise Invalid(
            f"response_format type {kind!r} is not supported (text, json_object, json_schema)",
            param="response_format.type",
            code="invalid_value",
        )
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
        raise Invalid(
            "response_format json_schema needs a 'schema' object",
            param="response_format.json_schema.schema",
        )
    schema = spec["schema"]
    check_schema(schema, "response_format.json_schema.schema")
    problems = unsupported_features(schema)
    if problems:
        raise Invalid(
            "response_format.json_schema uses what a grammar cannot enforce: "
            + ", ".join(problems),
            param="response_format.json_schema.schema",
            code="unsupported_schema",
        )
    return schema, bool(spec.get("strict"))


def tool_parameters(tool: dict[str, Any]) -> dict[str, Any]:
    params = (tool.get("function") or {}).get("parameters")
    return params if isinstance(params, dict) and params else {"type": "object"}


def tool_call_schema(tools: list[dict[str, Any]]) -> dict[str, Any]:
    """The schema of one call ``{"name": ..., "arguments": ...}`` to any of ``tools``.

    ``$defs`` of every tool are hoisted to the root, where their local ``$ref`` s point; each
    tool's are renamed with its position (``t1_Node``) so that two tools' ``Node`` stay apart.
    """
    defs: dict[str, Any] = {}
    options = []
    for n, tool in enumerate(tools):
        params = dict(tool_parameters(tool))
        renamed: dict[str, str] = {}
        for key in ("$defs", "definitions"):
            if isinstance(params.get(key), dict):
                for name in params[key]:
                    renamed[f"#/{key}/{name}"] = f"#/{key}/t{n}_{name}"
        params = _renamed_refs(params, renamed, n)
        for key in ("$defs", "definitions"):
            if isinstance(params.get(key), dict):
                defs.setdefault(key, {}).update(params.pop(key))
        params.pop("$schema", None)
        options.append(
            {
                "type": "object",
                "properties": {"name": {"const": tool["function"]["name"]}, "arguments": params},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
        )
    schema: dict[str, Any] = options[0] if len(options) == 1 else {"anyOf": options}
    return {**schema, **defs}


def _renamed_refs(node: Any, renamed: dict[str, str], n: int, depth: int = 0) -> Any:
    """``node`` with its local ``$ref`` s (and its own ``$defs`` names) renamed for tool ``n``."""
    if depth > 200 or not renamed:
        return node
    if isinstance(node, list):
        return [_renamed_refs(x, renamed, n, depth + 1) for x in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$ref" and isinstance(value, str):
            base = "/".join(value.split("/")[:3])  # "#/$defs/Node/properties/x": its tail stays
            out[key] = renamed[base] + value[len(base) :] if base in renamed else value
        elif key in ("$defs", "definitions") and isinstance(value, dict) and depth == 0:
            out[key] = {
                f"t{n}_{k}": _renamed_refs(v, renamed, n, depth + 1) for k, v in value.items()
            }
        else:
            out[key] = _renamed_refs(value, renamed, n, depth + 1)
    return out


def tool_call_gbnf(tools: list[dict[str, Any]], loads: Loads | None = None) -> str:
    """GBNF for exactly one call to one of ``tools`` (keys in the order name, arguments); a
    pattern the grammar cannot hold is left to the model, as other unenforced keywords are."""
    return _to_gbnf(
        tool_call_schema(tools),
        param="tools",
        what="the parameters of a tool",
        loads=loads,
        lenient=True,
        prop_order=["name", "arguments"],
    )


_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


def check_tool_names(tools: list[dict[str, Any]]) -> None:
    for i, tool in enumerate(tools):
        fn = tool.get("function") if tool.get("type", "function") == "function" else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise Invalid(
                "each tool needs type 'function' and a function name", param=f"tools[{i}]"
            )
        if not _NAME.fullmatch(fn["name"]):
            raise Invalid(
                "a function name is 1-128 letters, digits, '_', '.', ':' or '-'",
                param=f"tools[{i}].function.name",
            )
