"""Request rates (per key, per tenant, shared by every gateway) and concurrent inference."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import redis as sync_redis

from hivemind_common import keys
from hivemind_common.auth import ApiKeyStore
from hivemind_common.redis import connect_redis
from support.gateway import running_gateway
from support.stub_inference import stub_inference
from support.waiting import wait_until

CLOSED = {
    "embedding_url": "http://127.0.0.1:9",
    "inference_url": "http://127.0.0.1:9",
    "trainer_url": "http://127.0.0.1:9",
}


def _key(redis_url: str, tenant: str = "acme", rpm: int | None = None) -> tuple[str, str]:
    async def make() -> tuple[str, str]:
        redis = connect_redis(redis_url)
        try:
            return await ApiKeyStore(redis).create(tenant=tenant, role="write", rpm=rpm)
        finally:
            await redis.aclose()

    return asyncio.run(make())


def _already_sent(redis_url: str, counter: Any, count: int) -> None:
    """As if ``count`` requests were made in this window; first waits until the window has at
    least 10 s left, so the requests that follow all land in it."""
    wait_until(
        lambda: time.time() % keys.RATE_WINDOW_S < keys.RATE_WINDOW_S - 10,
        timeout=keys.RATE_WINDOW_S,
        what="a rate window with time to spare",
    )
    r = sync_redis.Redis.from_url(redis_url)
    window = int(time.time() // keys.RATE_WINDOW_S)
    for w in (window, window + 1):
        r.set(counter(w), count, px=keys.RATE_WINDOW_S * 2000)
    r.close()


def _get(base: str, key: str) -> httpx.Response:
    return httpx.get(base + "/v1/facts", headers={"Authorization": f"Bearer {key}"}, timeout=30)


def test_a_keys_own_rate_is_shared_by_every_gateway_and_answered_429_with_retry_after(
    redis_url: str, internal_token: str, data_dir: Path
) -> None:
    key_id, key = _key(redis_url, rpm=4)
    with (
        running_gateway(redis_url, internal_token, data_dir, **CLOSED) as a,
        running_gateway(redis_url, internal_token, data_dir, **CLOSED) as b,
    ):
        _already_sent(redis_url, lambda w: keys.key_request_window(key_id, w), 2)
        assert _get(a.url, key).status_code == 200
        assert _get(b.url, key).status_code == 200
        refused = _get(a.url, key)
        assert refused.status_code == 429, refused.text
        assert 1 <= int(refused.headers["retry-after"]) <= keys.RATE_WINDOW_S
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert _get(b.url, key).status_code == 429
        _, other = _key(redis_url, rpm=4)  # another key of the same tenant has its own rate
        assert _get(b.url, other).status_code == 200


def test_the_default_rate_from_settings_and_a_tenants_rate_both_apply(
    redis_url: str, internal_token: str, data_dir: Path
) -> None:
    key_id, key = _key(redis_url)
    with running_gateway(redis_url, internal_token, data_dir, default_key_rpm=6, **CLOSED) as gw:
        _already_sent(redis_url, lambda w: keys.key_request_window(key_id, w), 5)
        assert _get(gw.url, key).status_code == 200
        assert _get(gw.url, key).status_code == 429
        sync_redis.Redis.from_url(redis_url).hset(keys.tenant_settings("globex"), "rpm", "3")
        _already_sent(redis_url, lambda w: keys.request_window("globex", w), 2)
        _, first = _key(redis_url, tenant="globex")
        _, second = _key(redis_url, tenant="globex")
        assert _get(gw.url, first).status_code == 200
        refused = _get(gw.url, second)  # the tenant's rate counts all its keys together
        assert refused.status_code == 429 and "globex" in refused.text


def test_a_tenant_runs_at_most_its_cap_of_inference_requests_at_once(
    redis_url: str, internal_token: str, data_dir: Path
) -> None:
    body = {"model": "default", "messages": [{"role": "user", "content": "hi"}], "temperature": 1}
    with (
        stub_inference(held=True) as stub,
        running_gateway(
            redis_url,
            internal_token,
            data_dir,
            **{**CLOSED, "inference_url": stub.url},
            max_inference_per_tenant=1,
            rag_enabled=False,
        ) as gw,
    ):
        release, waiting = stub.release, stub.chats
        acme, globex = gw.client("acme", "write"), gw.client("globex", "write")
        results: list[httpx.Response] = []
        first = threading.Thread(
            target=lambda: results.append(acme.post("/v1/chat/completions", json=body))
        )
        first.start()
        wait_until(lambda: len(waiting) == 1, timeout=30, what="the first chat to reach inference")
        second = acme.post("/v1/chat/completions", json=body)
        assert second.status_code == 429, second.text
        assert second.json()["error"]["type"] in ("rate_limit_error", "rate_limit_exceeded")
        assert second.headers["retry-after"] == "1"
        assert acme.get("/v1/facts").status_code == 200  # only inference is capped
        other = threading.Thread(target=lambda: globex.post("/v1/chat/completions", json=body))
        other.start()
        wait_until(lambda: len(waiting) == 2, timeout=30, what="another tenant's chat to run")
        release.set()
        first.join(timeout=30)
        other.join(timeout=30)
        assert results[0].status_code == 200, results[0].text
        assert acme.post("/v1/chat/completions", json=body).status_code == 200  # slot given back


def test_the_inference_cap_holds_across_gateways_behind_one_redis(
    redis_url: str, internal_token: str, data_dir: Path
) -> None:
    """Two gateways (or two workers of one) share the tenant's cap: counted in Redis, not in
    each process, where N workers allowed N times the cap."""
    body = {"model": "default", "messages": [{"role": "user", "content": "hi"}], "temperature": 1}
    settings = {"max_inference_per_tenant": 1, "rag_enabled": False}
    with stub_inference(held=True) as stub:
        upstream = {**CLOSED, "inference_url": stub.url, **settings}
        with (
            running_gateway(redis_url, internal_token, data_dir, **upstream) as a,
            running_gateway(redis_url, internal_token, data_dir, **upstream) as b,
        ):
            results: list[httpx.Response] = []
            held = threading.Thread(
                target=lambda: results.append(
                    a.client("acme", "write").post("/v1/chat/completions", json=body)
                )
            )
            held.start()
            wait_until(lambda: len(stub.chats) == 1, timeout=30, what="the chat on gateway a")
            refused = b.client("acme", "write").post("/v1/chat/completions", json=body)
            assert refused.status_code == 429, refused.text
            assert "already has 1 inference requests running" in refused.text
            stub.release.set()
            held.join(timeout=30)
            assert results[0].status_code == 200, results[0].text
            # given back once the response ended (in the background: waited for, not assumed)
            plain = sync_redis.Redis.from_url(redis_url)
            wait_until(
                lambda: plain.zcard(keys.inference_leases("acme")) == 0,
                timeout=30,
                what="the lease to be given back",
            )
            again = b.client("acme", "write").post("/v1/chat/completions", json=body)
            assert again.status_code == 200, again.text


def _inference_scope() -> dict[str, Any]:
    return {"type": "http", "path": "/v1/chat/completions", "state": {}}


class _Request:
    """What :meth:`RequestLimiter.check` reads of a request: its path and its ASGI scope."""

    def __init__(self) -> None:
        self.scope = _inference_scope()
        self.url = httpx.URL("http://gw" + self.scope["path"])


async def _refused(limiter: Any, principal: Any) -> bool:
    from hivemind_common.errors import TooManyRequests

    try:
        await limiter.check(principal, _Request())
    except TooManyRequests:
        return True
    return False


async def test_a_killed_gateways_leases_lapse_and_a_running_ones_are_renewed(
    redis_url: str,
) -> None:
    from hivemind_common.auth import Principal
    from hivemind_gateway.limits import _RELEASE, RequestLimiter

    redis = connect_redis(redis_url)
    plain = sync_redis.Redis.from_url(redis_url)
    principal = Principal(key_id="k1", tenant="acme", role="write")
    leases = keys.inference_leases("acme")
    limiters: list[RequestLimiter] = []

    def limiter(lease_ms: int = keys.INFERENCE_LEASE_MS) -> RequestLimiter:
        made = RequestLimiter(
            redis, default_key_rpm=0, max_inference_per_tenant=1, lease_ms=lease_ms
        )
        limiters.append(made)
        return made

    try:
        # a running gateway: its lease is renewed past its first life
        running, other = limiter(3000), limiter()
        request = _Request()
        await running.check(principal, request)
        (lease, first), *_ = plain.zrange(leases, 0, -1, withscores=True)
        deadline = time.monotonic() + 60
        while (plain.zscore(leases, lease) or 0) <= first and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert (plain.zscore(leases, lease) or 0) > first, "the lease was never renewed"
        assert await _refused(other, principal), "a second request passed the cap of 1"

        # lapsed in an outage (the renewals missed a whole life) and dropped by another
        # gateway's count: still running here, so the next renewal counts it again. The
        # background renewals stop first (aclose keeps the lease held), so none races the
        # lapse; the renewal is then run by hand
        await running.aclose()
        plain.zadd(leases, {lease: 1})
        assert not await _refused(other, principal)  # the outage let one more through
        assert plain.zscore(leases, lease) is None  # dropped as lapsed
        await running._renew_tenant("acme", 30)
        assert (plain.zscore(leases, lease) or 0) > first, "a running request was not recounted"

        await asyncio.wait({request.scope["state"].pop(_RELEASE)()}, timeout=30)  # it ended
        assert plain.zscore(leases, lease) is None

        # a killed gateway: it holds a lease, then stops renewing and never gives it back
        plain.delete(leases)
        killed = limiter(800)
        await killed.check(principal, _Request())
        await killed.aclose()  # as kill -9 leaves it: no renewal, no release
        while await _refused(other, principal) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert plain.zcard(leases) == 1, "the killed gateway's lease never lapsed"
    finally:
        for made in limiters:
            await made.aclose()
        plain.close()
        await redis.aclose()
