"""Regex patterns, nullable types and untyped subschemas in the schemas agents send.

llama-cpp-python's converter copied ``\\d`` into the grammar as it was, and llama.cpp, unable to
parse that grammar, put a null sampler in its chain: the inference process died (SIGSEGV) with
every request in it. A ``]`` that closed nothing made the converter loop forever. A list of
types dropped the enum or properties beside it; an untyped subschema (Pydantic's ``Any``) was
refused.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

import httpx
import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hivemind_common.errors import Invalid
from hivemind_inference.grammars import (
    _for_grammar,
    grammar_loader,
    grammar_pattern,
    schema_to_gbnf,
    tool_call_gbnf,
)


@pytest.fixture(scope="module")
def loads() -> Any:
    """The shipped model's own grammar parser (its vocabulary only: no weights are read)."""
    from llama_cpp import Llama

    from hivemind_common.models_paths import default_llm_gguf

    vocab = Llama(str(default_llm_gguf()), vocab_only=True, verbose=False)
    check = grammar_loader(vocab)
    assert check is not None
    return check


@pytest.mark.parametrize(
    ("pattern", "matches", "misses"),
    [
        (r"^\d{5}$", ["12345"], ["1234", "a2345"]),
        (r"\d+", ["ab12cd"], ["abcd"]),  # JSON Schema patterns search: unanchored
        (r"^[\w.-]+@[\w-]+\.[a-z]{2,}$", ["a.b@c-d.io"], ["a@b.c", "a@bxio"]),
        (r"^(?:ab|cd)$", ["cd"], ["ac"]),
        (r"^[^\s]+$", ["x-y"], ["x y"]),
        (r"^\S+$", ["x-y"], ["x y", "x\ty", 'x"y']),  # nothing a JSON string must escape
        (r"\D", ["a"], ["1", "\n"]),
        (r"^a.c$", ["abc"], ['a"c', "a\nc"]),
        (r"^[^,]+$", ["ab"], ["a,b", 'a"b', "a\\b"]),
        (r"^a|b$", ["ax", "xb"], ["xa", "bx"]),  # starts with a, or ends with b
        (r"^https?:\/\/[\w\-\.]+$", ["http://a-b.c"], ["ftp://a", "http://a/b"]),
        (r"^\+?[\d\s\-\(\)]+$", ["+1 (555) 12-3"], ["1x"]),
        (r"^\^[\^a]$", ["^^", "^a"], ["^b"]),
        (r"^[ -~]+$", ["a b~"], ['a"b', "a\\nb"]),  # a range over the quote and backslash
        (r"^a{3}?$", ["aaa"], ["", "aa"]),  # lazy: the same strings, never optional
        (r"^[^\r\n]+$", ["a b"], ["a\nb", "a\u00a0b"]),
        (r"^\S+$", ["ab"], ["a\u00a0b", "a\u2028b"]),  # Python's \S refuses these too
        (r"^[\041]$", ["!"], ["1", "4"]),  # octal, as Python reads it
        (r"^a{,}$", ["", "aaa"], ["a{,}"]),  # Python's {0,}
        (r"^[]a]+$", ["]a]"], ["b"]),
        (r"a]", ["xa]"], ["a"]),
        (r"^x{2,3}}$", ["xx}"], ["x}"]),
    ],
)
def test_a_pattern_is_rewritten_to_mean_the_same(
    pattern: str, matches: list[str], misses: list[str]
) -> None:
    rewritten = grammar_pattern(pattern)
    assert rewritten.startswith("^") and rewritten.endswith("$")
    for text in matches:
        assert re.search(rewritten, text), (pattern, rewritten, text)
    for text in misses:
        assert not re.search(rewritten, text), (pattern, rewritten, text)


@pytest.mark.parametrize(
    "pattern",
    [
        r"^\d{5}$",
        r"\d+",
        r"^a\.b$",
        r"^[\w.-]+@[\w-]+\.[a-z]{2,}$",
        r"^\S+$",
        "a]",
        r"^https?:\/\/[\w\-\.]+$",
        r"^\+?[\d\s\-\(\)]+$",
        r"^a|b$",
        r"^\^[\^a]$",
        r"^[ -~]+$",
        r"^[^\r\n]+$",
        r"^a{3}?$",
        r"^a{,}$",
    ],
)
def test_common_patterns_make_grammars_llama_cpp_loads(pattern: str, loads: Any) -> None:
    gbnf = schema_to_gbnf({"type": "string", "pattern": pattern}, param="rf", loads=loads)
    assert loads(gbnf)


def _within(seconds: float, call: Any) -> tuple[bool, BaseException | None]:
    """(finished, what it raised) for ``call`` run in a thread given ``seconds``."""
    raised: list[BaseException | None] = [None]

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # reported to the test
            raised[0] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    return not worker.is_alive(), raised[0]


@settings(max_examples=300, deadline=None)
@given(pattern=st.text(alphabet="ab^$.|()[]{}*+?\\-,02dwsbSDW\"'", max_size=12))
def test_any_pattern_is_a_grammar_that_loads_or_a_400_never_a_hang_or_a_crash(
    pattern: str, loads: Any
) -> None:
    def convert() -> None:
        try:
            gbnf = schema_to_gbnf({"type": "string", "pattern": pattern}, param="rf", loads=loads)
        except Invalid:
            return
        assert loads(gbnf)

    finished, raised = _within(30, convert)
    assert finished, f"the conversion of {pattern!r} did not end"
    assert raised is None, f"{pattern!r}: {raised!r}"


def test_what_the_grammar_cannot_spell_is_a_400(loads: Any) -> None:
    for schema in (
        {"type": "string", "enum": ['say "hi"', "b"]},
        {"enum": ["a\nb"]},
        {"type": "string", "pattern": r"\bword"},
        {"type": "string", "pattern": "^a|^b|c^d"},  # an anchor inside
        {"type": "string", "pattern": '^say "'},  # a quote the value must hold
        {"type": "string", "pattern": "[a"},  # not a regex
        {"maxLength": 3},  # a bound with no type, as the converter always refused
        {"type": "string", "pattern": "^a{0,30000}$"},  # llama.cpp's parser crashed on it
        {"type": "string", "pattern": '^a["]b$'},  # a class of nothing JSON holds bare
        {"type": "string", "pattern": "^a*+a$"},  # possessive
    ):
        with pytest.raises(Invalid) as caught:
            schema_to_gbnf(schema, param="response_format", loads=loads)
        assert caught.value.code == "unsupported_schema"


@pytest.mark.parametrize("pattern", [r"\bw", "[a", "a\\"])
def test_in_tool_parameters_a_pattern_the_grammar_cannot_hold_is_left_to_the_model(
    loads: Any, pattern: str
) -> None:
    params = {"type": "object", "properties": {"x": {"type": "string", "pattern": pattern}}}
    tool = {"type": "function", "function": {"name": "f", "parameters": params}}
    gbnf = tool_call_gbnf([tool], loads)
    assert loads(gbnf) and "x-kv" in gbnf


def test_nested_lists_of_types_do_not_multiply_the_schema(loads: Any) -> None:
    """Each branch of a list of types got every keyword beside it: 18 nested levels took 16 s
    on the model's only thread, and the body limit allows far more."""
    schema: dict[str, Any] = {"type": "integer"}
    for _ in range(40):
        schema = {"type": ["array", "null"], "items": schema}
    finished, raised = _within(60, lambda: schema_to_gbnf(schema, param="rf", loads=loads))
    assert finished and raised is None, raised
    assert len(json.dumps(_for_grammar(schema, "rf"))) < 40 * len(json.dumps(schema))


def test_a_list_of_types_keeps_the_keywords_beside_it(loads: Any) -> None:
    enum = schema_to_gbnf(
        {"type": ["string", "null"], "enum": ["red", "blue", None]}, param="rf", loads=loads
    )
    root = next(line for line in enum.splitlines() if line.startswith("root"))
    assert '"\\"red\\""' in root and "null" in root and "string" not in root
    obj = schema_to_gbnf(
        {"type": ["object", "null"], "properties": {"a": {"type": "integer"}}, "required": ["a"]},
        param="rf",
        loads=loads,
    )
    assert "a-kv" in obj  # the object's property is in the grammar, not any object


def test_an_untyped_subschema_allows_any_value(loads: Any) -> None:
    gbnf = schema_to_gbnf(
        {"type": "object", "properties": {"d": {"title": "D"}}, "required": ["d"]},
        param="rf",
        loads=loads,
    )
    assert loads(gbnf)


def test_the_service_answers_a_pattern_schema_and_survives_one_it_cannot_load(
    inference: httpx.Client,
) -> None:
    schema = {
        "type": "object",
        "properties": {"zip": {"type": "string", "pattern": r"^\d{5}$"}},
        "required": ["zip"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "a", "schema": schema, "strict": True}}
    messages = [{"role": "user", "content": "Give a US zip code as JSON."}]
    body = {"messages": messages, "max_tokens": 32, "temperature": 0, "response_format": fmt}
    answered = inference.post("/v1/chat/completions", json=body)
    assert answered.status_code == 200, answered.text
    jsonschema.validate(json.loads(answered.json()["choices"][0]["message"]["content"]), schema)

    schema["properties"]["zip"]["pattern"] = r"\bzip"
    refused = inference.post("/v1/chat/completions", json=body)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == "unsupported_schema"
    assert inference.get("/healthz").status_code == 200  # alive, and still answering
    del schema["properties"]["zip"]["pattern"]
    assert inference.post("/v1/chat/completions", json=body).status_code == 200
