"""Odd text (lone surrogates, NUL and other controls) gets a 4xx naming the field, never a 500."""

from __future__ import annotations

import json
from typing import Any

import pytest

# json.dumps escapes a lone surrogate as \ud800, which a JSON parser turns back into one
SURROGATE = "\ud800"
NUL = "\x00"
ESC = "\x1b"

CHAT = {"model": "default", "messages": [{"role": "user", "content": "hello"}]}

CASES: list[tuple[str, str, dict[str, Any], str]] = [
    (
        "POST",
        "/v1/chat/completions",
        {**CHAT, "messages": [{"role": "user", "content": f"hi {SURROGATE}"}]},
        "messages.0.content",
    ),
    (
        "POST",
        "/v1/chat/completions",
        {**CHAT, "messages": [{"role": "user", "content": [{"type": "text", "text": NUL}]}]},
        "messages.0.content.0.text",
    ),
    ("POST", "/v1/chat/completions", {**CHAT, "stop": ["ok", ESC]}, "stop.1"),
    (
        "POST",
        "/v1/chat/completions",
        {**CHAT, "messages": [{"role": "user", "content": f"colour {ESC}[31m{NUL}"}]},
        "messages.0.content",
    ),
    ("POST", "/v1/completions", {"model": "default", "prompt": SURROGATE}, "prompt"),
    ("POST", "/v1/embeddings", {"input": ["fine", f"x{SURROGATE}"]}, "input.1"),
    (
        "POST",
        "/v1/learning/samples",
        {"messages": [{"role": "user", "content": f"a{NUL}b"}]},
        "messages.0.content",
    ),
    ("PUT", "/v1/facts/a.key", {"value": f"v{SURROGATE}"}, "value"),
    ("POST", "/v1/memories", {"text": "ok", "metadata": {"note": NUL}}, "metadata.note"),
    ("POST", "/v1/memories", {"text": "ok", "metadata": {f"k{SURROGATE}": 1}}, "metadata"),
    ("POST", "/v1/sessions", {"context": f"c{ESC}"}, "context"),
    ("PUT", "/v1/cache/web_search/abc123", {"value": {"hits": [f"x{NUL}"]}}, "value.hits.0"),
    ("POST", "/v1/llm/generate", {"prompt": f"p{SURROGATE}"}, "prompt"),
    ("POST", "/v1/rag/context", {"query": f"q{NUL}"}, "query"),
]


@pytest.mark.parametrize(("method", "path", "body", "field"), CASES)
def test_odd_text_is_refused_with_the_field_named(
    gateway, method: str, path: str, body: dict[str, Any], field: str
) -> None:
    with gateway.client() as c:
        resp = c.request(
            method,
            path,
            content=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
        )
    assert resp.status_code in (400, 422), resp.text
    payload = resp.json()
    if "error" in payload:  # OpenAI's envelope
        message, param = payload["error"]["message"], payload["error"]["param"]
    else:
        message, param = payload["detail"], ".".join(payload["errors"][0]["loc"])
    assert param.startswith(field), (param, message)
    assert "U+" in message


def test_tabs_newlines_and_astral_characters_are_fine(gateway) -> None:
    text = "line one\n\tline two\r\n\U0001f600 \u00e9\u4e2d"
    with gateway.client() as c:
        assert c.put("/v1/facts/fine.text", json={"value": text}).status_code == 200
        assert c.get("/v1/facts/fine.text").json()["value"] == text


def test_terminal_escapes_in_a_conversation_are_cleaned_not_refused(gateway) -> None:
    """Tool results and pasted terminal output carry colour codes and stray controls: an agent's
    turn must not fail on them, and what is stored for training holds none of them."""
    coloured = f"{ESC}[1;31mFAILED{ESC}[0m tests/x.py\b\x07 {ESC}]0;title\x07done\tok"
    with gateway.client() as c:
        resp = c.post(
            "/v1/learning/samples",
            json={"messages": [{"role": "user", "content": coloured}], "source": "cli"},
        )
        assert resp.status_code in (200, 201, 202), resp.text
    from hivemind_common.text import ConversationInputModel, clean_conversation_text

    assert clean_conversation_text(coloured) == "FAILED tests/x.py done\tok"

    class Body(ConversationInputModel):
        messages: list[dict[str, str]]
        stop: list[str] | None = None

    body = Body.model_validate({"messages": [{"role": "user", "content": coloured}]})
    assert body.messages[0]["content"] == "FAILED tests/x.py done\tok"
    with pytest.raises(ValueError, match=r"stop\.0"):
        Body.model_validate({"messages": [], "stop": [ESC]})
