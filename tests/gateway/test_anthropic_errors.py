"""Anthropic's error envelope on the Messages routes when the model server is away."""

from __future__ import annotations

import anthropic
import pytest

from support.gateway import RunningGateway


def test_an_unreachable_model_server_is_an_overloaded_error(gateway: RunningGateway) -> None:
    claude = anthropic.Anthropic(
        base_url=gateway.url, api_key=gateway.key(role="read"), max_retries=0
    )
    with pytest.raises(anthropic.APIStatusError) as err:
        claude.messages.create(
            model="claude-x", max_tokens=4, messages=[{"role": "user", "content": "hi"}]
        )
    assert err.value.status_code == 503
    assert err.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": err.value.body["error"]["message"]},  # type: ignore[index]
    }


def test_count_tokens_with_a_wrong_key_is_an_authentication_error(gateway: RunningGateway) -> None:
    claude = anthropic.Anthropic(base_url=gateway.url, api_key="hm_wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as err:
        claude.messages.count_tokens(model="claude-x", messages=[{"role": "user", "content": "hi"}])
    assert err.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
