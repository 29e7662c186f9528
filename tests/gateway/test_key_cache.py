"""The in-process API key cache: a known key needs no Redis read, and a revocation made anywhere
reaches every gateway within a second (issue 17)."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client import REGISTRY

from hivemind_common import keys
from hivemind_common.auth import ApiKeyStore
from hivemind_common.errors import Unauthorized
from hivemind_common.key_cache import REVOCATION_BOUND_S, KeyCache
from hivemind_common.redis import connect_redis
from support.gateway import revoke_api_key, running_gateway
from support.waiting import wait_until

CLOSED = {
    "embedding_url": "http://127.0.0.1:9",
    "inference_url": "http://127.0.0.1:9",
    "trainer_url": "http://127.0.0.1:9",
}


def _hits() -> float:
    return REGISTRY.get_sample_value("hivemind_api_key_cache_total", {"result": "hit"}) or 0.0


def _status(base: str, key: str) -> int:
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.get(base + "/v1/facts", headers=headers, timeout=30).status_code


def _revoke_elsewhere(redis_url: str, key: str) -> None:
    revoke_api_key(redis_url, key)


def test_a_key_revoked_anywhere_is_refused_by_every_gateway_within_a_second(
    redis_url: str, internal_token: str, data_dir: Path
) -> None:
    with (
        running_gateway(redis_url, internal_token, data_dir, **CLOSED) as a,
        running_gateway(redis_url, internal_token, data_dir, **CLOSED) as b,
    ):
        key = a.key("acme", "read")

        def both_from_cache() -> bool:
            before = _hits()
            assert _status(a.url, key) == 200 and _status(b.url, key) == 200
            return _hits() >= before + 2  # both answered from their caches, no Redis read

        wait_until(both_from_cache, timeout=30, what="both gateways to answer from their cache")

        _revoke_elsewhere(redis_url, key)
        wait_until(
            lambda: _status(a.url, key) == 401 and _status(b.url, key) == 401,
            timeout=REVOCATION_BOUND_S,
            interval=0.01,
            what="both gateways to refuse the revoked key",
        )
        other = a.key("acme", "write")  # the tenant's other keys are untouched
        assert _status(a.url, other) == 200 and _status(b.url, other) == 200


def test_a_key_revoked_through_one_gateways_api_is_refused_by_the_other(
    redis_url: str, internal_token: str, data_dir: Path
) -> None:
    with (
        running_gateway(redis_url, internal_token, data_dir, **CLOSED) as a,
        running_gateway(redis_url, internal_token, data_dir, **CLOSED) as b,
    ):
        key = a.key("acme", "write")
        assert _status(a.url, key) == 200 and _status(b.url, key) == 200
        with a.client("acme", "admin") as admin:
            assert admin.delete(f"/v1/keys/{key.split('_')[1]}").status_code == 204
        assert _status(a.url, key) == 401  # the gateway that revoked forgets at once
        wait_until(
            lambda: _status(b.url, key) == 401,
            timeout=REVOCATION_BOUND_S,
            interval=0.01,
            what="the other gateway to refuse the revoked key",
        )


async def test_a_lookup_that_raced_a_revocation_is_not_remembered(redis_url: str) -> None:
    redis = connect_redis(redis_url)
    try:
        cache = KeyCache(redis, ttl_s=60)
        store = ApiKeyStore(redis, cache=cache)
        _, key = await store.create(tenant="acme", role="read")
        async with cache.running():
            await cache.poll(block_ms=1)  # healthy now, whatever the task has done so far
            principal = await store.verify(key)
            epoch = cache.epoch
            cache.forget(principal.key_id)  # a revocation arrived while a lookup was reading
            cache.put(principal, "stale", epoch)
            assert len(cache) == 0
            assert await store.verify(key) == principal
            assert cache.get(principal.key_id, "another secret") is None
    finally:
        await redis.aclose()


async def test_without_a_healthy_tail_every_key_is_read_from_redis(redis_url: str) -> None:
    redis = connect_redis(redis_url)
    try:
        cache = KeyCache(redis, ttl_s=60)  # never started: nothing it holds is trusted
        store = ApiKeyStore(redis, cache=cache)
        key_id, key = await store.create(tenant="acme", role="read")
        await store.verify(key)
        await ApiKeyStore(redis).revoke(key_id)  # no local cache to tell, no tail running
        try:
            await store.verify(key)
            raise AssertionError("a revoked key was accepted")
        except Unauthorized as exc:
            assert "revoked" in exc.message
        entries = await redis.xrange(keys.api_key_revocations())
        assert [e[1]["key_id"] for e in entries] == [key_id]
    finally:
        await redis.aclose()
