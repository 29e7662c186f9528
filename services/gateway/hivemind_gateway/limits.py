"""Request rates per key and per tenant, and concurrent inference per tenant.

Rates: fixed one-minute windows counted in Redis, so every gateway behind one Redis agrees. One
pipelined round trip per request (INCR+PEXPIRE of the key's counter and of the tenant's, and the
tenant's own ``rpm`` setting read alongside); over the rate is a 429 with ``Retry-After`` set to
the seconds left in the window. A key's rate is its own ``rpm`` (``hivemind keys create --rpm``)
or the gateway's ``default_key_rpm``; a tenant's is ``hivemind tenants set --rpm`` (all its keys
together). A fixed window lets a burst of up to twice the rate straddle a window boundary; that
is the price of one round trip.

No library fits: ``limits`` (and slowapi, fastapi-limiter on top of it) builds its own Redis
clients from a storage URI, so it would bypass our connector's Sentinel failover, retry policy and
URL options, and take a second connection pool.

Inference: at most ``max_inference_per_tenant`` chats/completions of one tenant run at once in
this gateway process (a 429 beyond that). The slot is taken after authentication (in the same
hook as the rate) and given back by :class:`InferenceSlots` when the response has been sent in
full, so a long stream holds its slot until it ends.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from hivemind_common import keys
from hivemind_common.auth import Principal
from hivemind_common.errors import TooManyRequests

INFERENCE_PATHS = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/messages",
    "/v1/responses",
    "/v1/llm/",
)
NOT_INFERENCE = ("/v1/messages/count_tokens",)
_RELEASE = "hivemind_inference_release"


def is_inference(path: str) -> bool:
    return path.startswith(INFERENCE_PATHS) and not path.startswith(NOT_INFERENCE)


class RequestLimiter:
    """The gateway's ``app.state.rate_limiter``: called by ``require_role`` after the key."""

    def __init__(self, redis: Any, *, default_key_rpm: int, max_inference_per_tenant: int) -> None:
        self.redis = redis
        self.default_key_rpm = default_key_rpm
        self.max_inference = max_inference_per_tenant
        self.running: Counter[str] = Counter()

    async def check(self, principal: Principal, request: Any = None) -> None:
        """Count this request against its key's and tenant's rates; take an inference slot."""
        await self._count(principal)
        if request is not None and self.max_inference and is_inference(request.url.path):
            self._take_slot(principal.tenant, request.scope)

    async def _count(self, principal: Principal) -> None:
        now = time.time()
        window = int(now // keys.RATE_WINDOW_S)
        ttl_ms = keys.RATE_WINDOW_S * 1000 + 1000
        key_counter = keys.key_request_window(principal.key_id, window)
        tenant_counter = keys.request_window(principal.tenant, window)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.incr(key_counter)
            pipe.pexpire(key_counter, ttl_ms)
            pipe.incr(tenant_counter)
            pipe.pexpire(tenant_counter, ttl_ms)
            pipe.hget(keys.tenant_settings(principal.tenant), "rpm")
            by_key, _, by_tenant, _, tenant_rpm = await pipe.execute()
        retry_after = (window + 1) * keys.RATE_WINDOW_S - now
        key_rpm = principal.rpm or self.default_key_rpm
        if key_rpm and int(by_key) > key_rpm:
            raise TooManyRequests(
                f"this key may send {key_rpm} requests a minute", retry_after=retry_after
            )
        limit = int(tenant_rpm) if tenant_rpm and str(tenant_rpm).isdigit() else 0
        if limit and int(by_tenant) > limit:
            raise TooManyRequests(
                f"tenant {principal.tenant!r} may send {limit} requests a minute",
                retry_after=retry_after,
            )

    def _take_slot(self, tenant: str, scope: Scope) -> None:
        state = scope.setdefault("state", {})
        if _RELEASE in state:  # a second auth check in one request holds one slot
            return
        if self.running[tenant] >= self.max_inference:
            raise TooManyRequests(
                f"tenant {tenant!r} already has {self.max_inference} inference requests "
                "running on this gateway",
                retry_after=1,
            )
        self.running[tenant] += 1

        def release() -> None:
            self.running[tenant] -= 1
            if self.running[tenant] <= 0:
                del self.running[tenant]

        state[_RELEASE] = release


class InferenceSlots:
    """ASGI layer: gives back a request's inference slot once its response is sent (or fails)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})  # made here, so every copy of the scope shares it
        try:
            await self.app(scope, receive, send)
        finally:
            release = scope.get("state", {}).pop(_RELEASE, None)
            if release is not None:
                release()
