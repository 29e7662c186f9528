"""Schemas a grammar cannot hold are a 400, never a 500 or a grammar that exhausts memory."""

from __future__ import annotations

from typing import Any

import pytest

from hivemind_common.errors import Invalid
from hivemind_inference.grammars import MAX_GRAMMAR_CHARS, schema_to_gbnf, tool_call_gbnf


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"a": True}},  # boolean subschemas are valid JSON Schema
        {"type": "array", "items": True},
        {"type": "string", "minLength": 10**6},
    ],
)
def test_a_schema_the_converter_cannot_take_is_invalid(schema: dict[str, Any]) -> None:
    with pytest.raises(Invalid) as caught:
        schema_to_gbnf(schema, param="response_format")
    assert caught.value.code == "unsupported_schema"


def test_a_huge_upper_bound_does_not_blow_the_grammar_up() -> None:
    gbnf = schema_to_gbnf({"type": "string", "maxLength": 10**9}, param="response_format")
    assert len(gbnf) < MAX_GRAMMAR_CHARS


def test_a_tool_whose_parameters_break_the_converter_is_invalid() -> None:
    tool = {
        "type": "function",
        "function": {"name": "f", "parameters": {"type": "object", "properties": {"x": True}}},
    }
    with pytest.raises(Invalid):
        tool_call_gbnf([tool])


def test_two_tools_defs_of_one_name_stay_apart() -> None:
    """$defs were merged into one root: a later tool's Node replaced an earlier one's."""
    import jsonschema

    from hivemind_inference.grammars import tool_call_gbnf, tool_call_schema

    def tool(name: str, node: dict[str, object]) -> dict[str, object]:
        params = {"type": "object", "properties": {"n": {"$ref": "#/$defs/Node"}},
                  "$defs": {"Node": node}}  # fmt: skip
        return {"type": "function", "function": {"name": name, "parameters": params}}

    a = tool("a", {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}})
    b = tool("b", {"type": "string"})
    schema = tool_call_schema([a, b])
    jsonschema.validate({"name": "a", "arguments": {"n": {"next": {}}}}, schema)
    jsonschema.validate({"name": "b", "arguments": {"n": "text"}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "a", "arguments": {"n": "text"}}, schema)
    assert tool_call_gbnf([a, b])
