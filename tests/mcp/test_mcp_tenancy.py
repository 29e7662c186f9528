"""Over HTTP the caller's own key reaches the gateway: tenants stay apart, roles hold."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from mcp_bridge_support import bridge_settings, http_session, running_bridge

from hivemind_common.auth import ApiKeyStore
from hivemind_common.redis import connect_redis
from support.gateway import revoke_api_key

pytestmark = pytest.mark.slow


def _text(result: Any) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


@pytest.fixture
def keys(full_gateway: Any) -> dict[str, str]:
    return {
        "acme": full_gateway.key("acme", "write"),
        "globex": full_gateway.key("globex", "write"),
        "reader": full_gateway.key("acme", "read"),
    }


@pytest.fixture
def bridge(full_gateway: Any) -> Any:
    with running_bridge(bridge_settings(full_gateway.url, auth_cache_s=0.0)) as url:
        yield url


async def test_two_tenants_on_one_bridge_never_see_each_others_facts(
    bridge: str, keys: dict[str, str]
) -> None:
    async with (
        http_session(bridge, keys["acme"]) as acme,
        http_session(bridge, keys["globex"]) as globex,
    ):
        stored = await acme.call_tool("fact_store", {"key": "plan", "value": "acme's secret"})
        assert not stored.is_error, _text(stored)
        theirs = await globex.call_tool("fact_get", {"key": "plan"})
        assert theirs.is_error
        assert "not found" in _text(theirs)
        mine = await acme.call_tool("fact_get", {"key": "plan"})
        assert mine.structured_content["value"] == "acme's secret"


async def test_a_read_key_cannot_write_through_the_bridge(
    bridge: str, keys: dict[str, str]
) -> None:
    async with http_session(bridge, keys["reader"]) as reader:
        result = await reader.call_tool("fact_store", {"key": "k", "value": "v"})
    assert result.is_error
    assert "role" in _text(result)


def _revoke(redis_url: str, key: str) -> None:
    revoke_api_key(redis_url, key)


async def test_a_key_revoked_mid_session_gets_a_tool_error_then_the_door_closes(
    full_gateway: Any, keys: dict[str, str], redis_url: str
) -> None:
    key = keys["acme"]
    with running_bridge(bridge_settings(full_gateway.url)) as url:  # keys remembered 30 s
        async with http_session(url, key) as client:
            before = await client.call_tool("fact_list", {})
            assert not before.is_error, _text(before)
            await asyncio.to_thread(_revoke, redis_url, key)
            after = await client.call_tool("fact_list", {})
            assert after.is_error
            assert "refused" in _text(after)
        # the refusal made the bridge forget the key it had remembered
        with pytest.raises(BaseException) as raised:
            async with http_session(url, key) as again:
                await again.list_tools()
    assert "refused" in repr(_leaves(raised.value))


async def test_a_revoked_key_is_turned_away_at_the_door(
    bridge: str, keys: dict[str, str], redis_url: str
) -> None:
    key = keys["acme"]
    headers = {"Authorization": f"Bearer {key}", "Accept": "application/json, text/event-stream"}
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    async with httpx.AsyncClient(timeout=10) as http:
        accepted = await http.post(bridge, json=ping, headers=headers)
        await asyncio.to_thread(_revoke, redis_url, key)
        refused = await http.post(bridge, json=ping, headers=headers)
    assert accepted.status_code != 401
    assert refused.status_code == 401
    assert "refused" in refused.json()["error"]["message"]


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


async def test_an_http_caller_acts_with_its_own_key_not_the_bridges(
    full_gateway: Any, keys: dict[str, str]
) -> None:
    settings = bridge_settings(full_gateway.url, api_key=keys["acme"])  # a stdio key, unused here
    with running_bridge(settings) as url:
        async with http_session(url, keys["globex"]) as globex:
            stored = await globex.call_tool("fact_store", {"key": "owner", "value": "globex"})
            assert not stored.is_error, _text(stored)
    headers = {"Authorization": f"Bearer {keys['acme']}"}
    async with httpx.AsyncClient(base_url=full_gateway.url, headers=headers) as acme:
        assert (await acme.get("/v1/facts/owner")).status_code == 404


async def test_the_bridge_shows_only_the_callers_learning_status_and_passes_quota_refusals(
    bridge: str, keys: dict[str, str], full_gateway: Any, redis_url: str
) -> None:
    import json

    import redis as sync_redis

    from hivemind_common import keys as redis_keys

    redis = connect_redis(redis_url)
    try:
        _, operator = await ApiKeyStore(redis).create(tenant="default", role="operator")
    finally:
        await redis.aclose()
    async with httpx.AsyncClient(base_url=full_gateway.url) as http:
        auth = {"Authorization": f"Bearer {operator}"}
        job_id = (await http.post("/v1/learning/train", json={}, headers=auth)).json()["job_id"]
    r = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    r.hset(redis_keys.tenant_settings("globex"), "max_facts", "1")
    r.close()
    async with http_session(bridge, keys["globex"]) as globex:
        status = await globex.call_tool("learning_status", {})
        assert not status.is_error, _text(status)
        shown = json.dumps(status.structured_content)
        assert job_id not in shown and "leader" not in shown
        first = await globex.call_tool("fact_store", {"key": "one", "value": "1"})
        assert not first.is_error, _text(first)
        second = await globex.call_tool("fact_store", {"key": "two", "value": "2"})
        assert second.is_error and "quota" in _text(second)


async def test_sessions_are_listed_whole_or_cut_to_a_preview(
    bridge: str, keys: dict[str, str], full_gateway: Any
) -> None:
    context = "step " * 2_000
    async with httpx.AsyncClient(
        base_url=full_gateway.url, headers={"Authorization": f"Bearer {keys['acme']}"}
    ) as api:
        put = await api.put("/v1/sessions/long-one/context", json={"context": context})
        assert put.status_code == 200, put.text
    async with http_session(bridge, keys["acme"]) as acme:
        whole = await acme.call_tool("memory_list_sessions", {})
        assert not whole.is_error, _text(whole)
        (listed,) = [s for s in whole.structured_content["data"] if s["id"] == "long-one"]
        assert listed["context"] == context and listed["context_chars"] == len(context)
        cut = await acme.call_tool("memory_list_sessions", {"preview_chars": 9})
        (short,) = [s for s in cut.structured_content["data"] if s["id"] == "long-one"]
        assert short["context"] == "step step" and short["context_chars"] == len(context)
        bad = await acme.call_tool("memory_list_sessions", {"preview_chars": -1})
        assert bad.is_error
