"""The one text rule, the one JSON encoder and the one id rule of hivemind_common."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from hivemind_common import ids, json_codec
from hivemind_common.text import InputModel, SafeText, check_text, find_bad_string

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("ch", ["\x00", "\x07", "\x1b", "\x7f", "\x85", "\ud800", "\udfff"])
def test_controls_and_lone_surrogates_are_refused_by_position(ch: str) -> None:
    with pytest.raises(ValueError, match=f"U\\+{ord(ch):04X} at position 2"):
        check_text(f"ab{ch}cd")


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc"))))
@settings(max_examples=200)
def test_any_text_without_controls_or_surrogates_passes(text: str) -> None:
    assert check_text(text) == text
    assert check_text(f"\t{text}\n\r") == f"\t{text}\n\r"


def test_the_walk_names_the_first_bad_string_by_its_path() -> None:
    body = {"a": [{"b": "ok"}, {"c": "x\x00"}], "d": "fine"}
    problem = "text contains the control character U+0000 at position 1"
    assert find_bad_string(body) == ("a.1.c", problem)
    assert find_bad_string({"z": "\x01", "a": "\x02"})[0] == "z"  # document order
    assert find_bad_string({"k\ud800": 1})[0] == "k\\ud800"
    assert find_bad_string({"a": ["fine", 1, None, 2.5]}) is None


def test_an_input_model_checks_fields_it_does_not_declare() -> None:
    class Body(InputModel):
        name: SafeText

    assert Body.model_validate({"name": "ok", "extra": "x"}).name == "ok"
    with pytest.raises(ValidationError) as info:
        Body.model_validate({"name": "ok", "extra": ["\ud800"]})
    assert info.value.errors()[0]["ctx"]["field"] == "extra.0"


@given(st.recursive(st.text() | st.integers() | st.none(), lambda c: st.lists(c, max_size=3)))
@settings(max_examples=200)
def test_the_json_encoder_never_fails_on_any_string(value: object) -> None:
    encoded = json_codec.dumps(value)
    assert isinstance(encoded, bytes)
    encoded.decode("utf-8")


def test_the_gateway_sends_upstream_with_the_one_encoder() -> None:
    from hivemind_gateway.openai import upstream

    assert upstream.dumps is json_codec.dumps
    encoded = json_codec.dumps({"a": "\ud800", "n": 2**70})
    assert encoded == b'{"a":"\\ud800","n":1180591620717411303424}'


# Each kind of name has one pattern, in hivemind_common.ids; nothing else spells one out.
_ID_CLASS = re.compile(r"\[A-Za-z0-9\]\[A-Za-z0-9")
_ALLOWED = {"libs/common/hivemind_common/ids.py"}


def test_id_patterns_are_spelled_out_only_in_the_ids_module() -> None:
    offenders = []
    for root in ("libs", "services"):
        for path in (REPO / root).rglob("*.py"):
            rel = path.relative_to(REPO).as_posix()
            if rel not in _ALLOWED and _ID_CLASS.search(path.read_text(encoding="utf-8")):
                offenders.append(rel)
    assert offenders == []


@pytest.mark.parametrize(
    ("value", "ok"),
    [("default", True), ("v20250101-ab12", True), ("a:b", False), ("../x", False), ("", False)],
)
def test_names_follow_one_rule_everywhere(value: str, ok: bool) -> None:
    from hivemind_common.model_registry import valid_name

    assert ids.valid_name(value) is ok
    assert valid_name(value) is ok


def test_an_id_with_a_trailing_newline_is_not_valid() -> None:
    """Python's ``$`` also matches before a final newline: the rule must hold to the end."""
    from hivemind_common import ids

    for check in (ids.valid_tenant, ids.valid_name, ids.valid_id, ids.valid_tag):
        assert check("abc") and not check("abc\n"), check.__name__
