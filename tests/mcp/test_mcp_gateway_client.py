"""The bridge turns gateway answers into plain sentences and keeps keys inside their routes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from hivemind_mcp.auth import KeyChecker
from hivemind_mcp.gateway import error_detail, path_segment, refusal_message


def _response(status: int, body: Any) -> httpx.Response:
    return httpx.Response(status, json=body)


def test_a_problem_document_gives_its_detail() -> None:
    body = {"title": "Not found", "status": 404, "detail": "no fact 'x'", "code": "not_found"}
    assert refusal_message(_response(404, body)) == "not found (HTTP 404): no fact 'x'"


def test_an_openai_error_envelope_gives_its_message() -> None:
    body = {"error": {"message": "max_tokens too large", "type": "invalid_request_error"}}
    assert error_detail(_response(400, body)) == "max_tokens too large"


def test_a_plain_validation_list_names_the_field() -> None:
    body = {"detail": [{"loc": ["body", "value"], "msg": "Field required"}]}
    assert error_detail(_response(422, body)) == "value: Field required"


def test_a_server_failure_is_said_to_be_the_gateways() -> None:
    message = refusal_message(httpx.Response(502, text="bad gateway"))
    assert message.startswith("the Hive-Mind gateway failed (HTTP 502)")


@pytest.mark.parametrize(
    "key", ["a/b", "..", ".", "../../v1/stats", "k?x=1", "k#frag", "with space"]
)
def test_a_key_is_one_path_segment_whatever_it_contains(key: str) -> None:
    segment = path_segment(key)
    assert "/" not in segment and "?" not in segment and "#" not in segment
    url = httpx.URL("http://gw/v1/facts/" + segment)
    assert url.raw_path.count(b"/") == 3
    assert url.path.startswith("/v1/facts/")


async def test_a_good_key_is_checked_once_then_remembered(gateway: Any, acme_key: str) -> None:
    seen: list[str] = []

    async def count(request: httpx.Request) -> None:
        seen.append(request.url.path)

    async with httpx.AsyncClient(base_url=gateway.url, event_hooks={"request": [count]}) as http:
        checker = KeyChecker(http, check_path="/v1/facts?limit=1", ttl_s=60)
        assert await checker.refusal(acme_key) is None
        assert await checker.refusal(acme_key) is None
        assert await checker.refusal("hm_000000000000_wrong") is not None
        assert await checker.refusal("hm_000000000000_wrong") is not None
    assert seen == ["/v1/facts"] * 3


async def test_an_unreachable_gateway_does_not_lock_callers_out() -> None:
    async with httpx.AsyncClient(base_url="http://127.0.0.1:9", timeout=2) as http:
        checker = KeyChecker(http, check_path="/v1/facts?limit=1", ttl_s=60)
        assert await checker.refusal("hm_abc_def") is None


async def test_messages_keep_the_urls_password_out_say_when_to_retry_and_name_a_bad_key() -> None:
    from mcp.server.mcpserver.exceptions import ToolError

    from hivemind_mcp.gateway import GatewayClient

    async with httpx.AsyncClient(base_url="http://user:s3cret@127.0.0.1:9", timeout=2) as http:
        gateway = GatewayClient(http)
        with pytest.raises(ToolError) as down:
            await gateway.call("GET", "/v1/facts", api_key="hm_abc_def")
        assert "unreachable" in str(down.value) and "s3cret" not in str(down.value)
        with pytest.raises(ToolError, match="printable ASCII"):  # was a bare UnicodeEncodeError
            await gateway.call("GET", "/v1/facts", api_key="hm_clé")
    limited = httpx.Response(429, json={"detail": "slow down"}, headers={"Retry-After": "7"})
    assert "retry after 7 s" in refusal_message(limited)
