"""What keeps an agent's prompt head stable from turn to turn (so llama.cpp can reuse it)."""

from __future__ import annotations

from hivemind_gateway.anthropic.convert import chat_payload
from hivemind_gateway.openai.injection import with_system_text


def test_retrieval_is_appended_after_the_callers_own_system_prompt() -> None:
    messages = [
        {"role": "system", "content": "You are an agent."},
        {"role": "user", "content": "hi"},
    ]
    out = with_system_text(messages, "CONTEXT")
    assert out[0]["content"].startswith("You are an agent.")
    assert out[0]["content"].endswith("CONTEXT")
    assert messages[0]["content"] == "You are an agent."  # the caller's list is not changed


def test_system_blocks_keep_their_order_and_retrieval_comes_last() -> None:
    messages = [{"role": "system", "content": [{"type": "text", "text": "A"}]}]
    out = with_system_text(messages, "CONTEXT")
    assert [p["text"] for p in out[0]["content"]] == ["A", "CONTEXT"]


def test_claude_codes_per_request_attribution_line_is_dropped() -> None:
    body = {
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.0; cch=ab12;\n"},
            {"type": "text", "text": "You are Claude Code."},
        ],
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 8,
    }
    payload = chat_payload(body, "default")
    assert payload["messages"][0] == {"role": "system", "content": "You are Claude Code."}
