"""Message-level limits: too many messages or too long a message is a clear 400, not work."""

from __future__ import annotations

from hivemind_common.text import MAX_CHAT_MESSAGES, MAX_MESSAGE_CHARS

ONE = {"role": "user", "content": "hi"}


def test_a_chat_with_too_many_messages_is_a_400_naming_messages(gateway) -> None:
    body = {"model": "default", "messages": [ONE] * (MAX_CHAT_MESSAGES + 1)}
    with gateway.client(role="read") as c:
        resp = c.post("/v1/chat/completions", json=body)
    assert resp.status_code == 400
    err = resp.json()["error"]
    assert err["param"] == "messages"
    assert str(MAX_CHAT_MESSAGES) in err["message"]


def test_a_message_over_the_character_limit_is_a_400_naming_it(gateway) -> None:
    long = {"role": "user", "content": "x" * (MAX_MESSAGE_CHARS + 1)}
    body = {"model": "default", "messages": [ONE, long]}
    with gateway.client(role="read") as c:
        resp = c.post("/v1/chat/completions", json=body)
    assert resp.status_code == 400
    err = resp.json()["error"]
    assert err["param"] == "messages.1.content"
    assert str(MAX_MESSAGE_CHARS) in err["message"]


def test_the_limit_counts_the_text_of_content_parts(gateway) -> None:
    half = {"type": "text", "text": "x" * (MAX_MESSAGE_CHARS // 2 + 1)}
    body = {"model": "default", "messages": [{"role": "user", "content": [half, half]}]}
    with gateway.client(role="read") as c:
        resp = c.post("/v1/chat/completions", json=body)
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "messages.0.content"


def test_completion_prompts_and_embedding_inputs_have_the_same_limit(gateway) -> None:
    with gateway.client(role="read") as c:
        prompt = c.post(
            "/v1/completions", json={"model": "default", "prompt": "x" * (MAX_MESSAGE_CHARS + 1)}
        )
        embed = c.post("/v1/embeddings", json={"input": ["ok", "x" * (MAX_MESSAGE_CHARS + 1)]})
    assert prompt.status_code == 400
    assert prompt.json()["error"]["param"].startswith("prompt")
    assert embed.status_code == 400
    assert embed.json()["error"]["param"].startswith("input")


def test_anthropic_messages_have_the_same_limits(gateway) -> None:
    body = {"model": "default", "max_tokens": 5, "messages": [ONE] * (MAX_CHAT_MESSAGES + 1)}
    with gateway.client(role="read") as c:
        resp = c.post("/v1/messages", json=body)
    assert resp.status_code == 400
    assert resp.json()["type"] == "error"
