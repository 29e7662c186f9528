"""Request rates per key and per tenant, and concurrent inference per tenant.

Rates: fixed one-minute windows counted in Redis, so every gateway behind one Redis agrees. One
pipelined round trip (INCRBY+PEXPIRE of the key's counter and of the tenant's, and the tenant's
own ``rpm`` setting read alongside) counts every request that asked in the same turn of the event
loop: 16 concurrent requests of one key are one ``INCRBY 16``, and each request takes its own
place in the range it returns, which is what 16 ``INCR`` would have given them in some order.
Over the rate is a 429 with ``Retry-After`` set to the seconds left in the window. A key's rate is
its own ``rpm`` (``hivemind keys create --rpm``) or the gateway's ``default_key_rpm``; a
tenant's is ``hivemind tenants set --rpm`` (all its keys together). A fixed window lets a burst
of up to twice the rate straddle a window boundary; that is the price of one round trip.

No library fits: ``limits`` (and slowapi, fastapi-limiter on top of it) builds its own Redis
clients from a storage URI, so it would bypass our connector's Sentinel failover, retry policy and
URL options, and take a second connection pool.

Inference: at most ``max_inference_per_tenant`` chats/completions of one tenant run at once
across every gateway process behind one Redis (a 429 beyond that). Each running request holds a
lease in the tenant's ``keys.inference_leases`` sorted set, taken by one script (drop lapsed
leases, count, add) after authentication, in the same hook as the rate, and given back by
:class:`InferenceSlots` when the response has been sent in full, so a long stream holds its slot
until it ends. A lease lapses ``keys.INFERENCE_LEASE_MS`` after it was last renewed; the gateway
renews its own every third of that, so a gateway killed mid-request (``kill -9``) holds its
tenants' slots for at most that long. A lease is given back before the response's last part
is sent, so a client's next chat never finds its own slot still taken. During a Redis outage an
inference request gets 503, as every keyed request does (its rate cannot be counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
RELEASE_WAIT_S = 1.0  # a response's end waits this long at most for its slot to be given back
log = logging.getLogger(__name__)

# KEYS[1]: the tenant's leases; ARGV: lease id, the cap, the lease's life (ms). The clock is
# Redis' own, so gateways on different hosts agree on when a lease has lapsed.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
end
return 1
"""
# KEYS[1]: the tenant's leases; ARGV: the lease's life (ms), then the ids to renew: the leases
# of requests still running on the caller (one that lapsed in an outage is counted again; a
# given-back one is never sent, the caller's lock orders a give-back after a renewal)
_RENEW = """
local t = redis.call('TIME')
local until_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], until_ms, ARGV[i]) end
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
end
return 0
"""


def is_inference(path: str) -> bool:
    return path.startswith(INFERENCE_PATHS) and not path.startswith(NOT_INFERENCE)


@dataclass
class _Turn:
    """The requests counted in one turn of the event loop, flushed in one pipeline."""

    waiting: list[tuple[str, tuple[str, str], asyncio.Future[tuple[int, int, Any]]]] = field(
        default_factory=list
    )


class RequestLimiter:
    """The gateway's ``app.state.rate_limiter``: called by ``require_role`` after the key."""

    def __init__(
        self,
        redis: Any,
        *,
        default_key_rpm: int,
        max_inference_per_tenant: int,
        lease_ms: int = keys.INFERENCE_LEASE_MS,
    ) -> None:
        self.redis = redis
        self.default_key_rpm = default_key_rpm
        self.max_inference = max_inference_per_tenant
        self.lease_ms = lease_ms
        self.held: dict[str, set[str]] = {}  # tenant -> the leases this process holds
        self._turn: _Turn | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        self._renewer: asyncio.Task[None] | None = None
        # a tenant's renewal vs its give-backs (kept: one small lock per tenant ever served)
        self._locks: dict[str, asyncio.Lock] = {}
        self._closed = False

    async def check(self, principal: Principal, request: Any = None) -> None:
        """Count this request against its key's and tenant's rates; take an inference slot."""
        await self._count(principal)
        if request is not None:
            await self.hold(principal, request)

    async def _count(self, principal: Principal) -> None:
        now = time.time()
        window = int(now // keys.RATE_WINDOW_S)
        ttl_ms = keys.RATE_WINDOW_S * 1000 + 1000
        key_counter = keys.key_request_window(principal.key_id, window)
        tenant_counter = keys.request_window(principal.tenant, window)
        by_key, by_tenant, tenant_rpm = await self._counted(
            key_counter, tenant_counter, principal.tenant, ttl_ms
        )
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

    def _counted(
        self, key_counter: str, tenant_counter: str, tenant: str, ttl_ms: int
    ) -> asyncio.Future[tuple[int, int, Any]]:
        """This request's place in its key's and tenant's windows, and the tenant's rpm."""
        loop = asyncio.get_running_loop()
        if self._turn is None:
            self._turn = _Turn()
            loop.call_soon(self._start_flush, self._turn, ttl_ms)
        future: asyncio.Future[tuple[int, int, Any]] = loop.create_future()
        self._turn.waiting.append((key_counter, (tenant_counter, tenant), future))
        return future

    def _start_flush(self, turn: _Turn, ttl_ms: int) -> None:
        self._turn = None  # requests from now on start the next turn
        task = asyncio.get_running_loop().create_task(self._flush(turn, ttl_ms))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush(self, turn: _Turn, ttl_ms: int) -> None:
        key_counts = Counter(k for k, _, _ in turn.waiting)
        tenant_counts = Counter(t for _, t, _ in turn.waiting)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for counter, n in key_counts.items():
                    pipe.incrby(counter, n)
                    pipe.pexpire(counter, ttl_ms)
                for (counter, tenant), n in tenant_counts.items():
                    pipe.incrby(counter, n)
                    pipe.pexpire(counter, ttl_ms)
                    pipe.hget(keys.tenant_settings(tenant), "rpm")
                replies = await pipe.execute()
        except BaseException as exc:
            for _, _, future in turn.waiting:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        # the first place each request of a counter takes, handed out in arrival order
        next_key = {c: int(replies[2 * i]) - n + 1 for i, (c, n) in enumerate(key_counts.items())}
        base = 2 * len(key_counts)
        next_tenant: dict[tuple[str, str], int] = {}
        tenant_rpm: dict[tuple[str, str], Any] = {}
        for i, (both, n) in enumerate(tenant_counts.items()):
            next_tenant[both] = int(replies[base + 3 * i]) - n + 1
            tenant_rpm[both] = replies[base + 3 * i + 2]
        for key_counter, both, future in turn.waiting:
            place = (next_key[key_counter], next_tenant[both], tenant_rpm[both])
            next_key[key_counter] += 1
            next_tenant[both] += 1
            if not future.done():
                future.set_result(place)

    async def hold(self, principal: Principal, request: Any) -> None:
        """Take an inference slot for ``request`` if it is a chat or completion (after its
        role was checked: a refused request never holds one)."""
        if self.max_inference and is_inference(request.url.path):
            await self._take_slot(principal.tenant, request.scope)

    async def _take_slot(self, tenant: str, scope: Scope) -> None:
        state = scope.setdefault("state", {})
        if _RELEASE in state:  # a second auth check in one request holds one slot
            return
        lease = secrets.token_hex(8)
        key = keys.inference_leases(tenant)
        # a lease whose reply is lost (a cut connection) is not known here: it lapses
        taken = await self.redis.eval(_ACQUIRE, 1, key, lease, self.max_inference, self.lease_ms)
        if not int(taken):
            raise TooManyRequests(
                f"tenant {tenant!r} already has {self.max_inference} inference requests running",
                retry_after=1,
            )
        self.held.setdefault(tenant, set()).add(lease)
        if self._renewer is None and not self._closed:
            self._renewer = asyncio.get_running_loop().create_task(self._renew())

        def release() -> asyncio.Task[None]:
            """Forget the lease here at once (no more renewals), and drop it in Redis."""
            mine = self.held.get(tenant)
            if mine is not None:
                mine.discard(lease)
                if not mine:
                    del self.held[tenant]
            task = asyncio.get_running_loop().create_task(self._give_back(tenant, lease))
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)
            return task

        state[_RELEASE] = release

    def _lock(self, tenant: str) -> asyncio.Lock:
        lock = self._locks.get(tenant)
        if lock is None:
            lock = self._locks[tenant] = asyncio.Lock()
        return lock

    async def _give_back(self, tenant: str, lease: str) -> None:
        try:
            # after any renewal in flight, which would otherwise add the lease back
            async with self._lock(tenant):
                await self.redis.zrem(keys.inference_leases(tenant), lease)
        except Exception as exc:  # it lapses by itself within the lease's life
            log.warning("inference lease not given back (%s); it lapses", type(exc).__name__)

    async def _renew(self) -> None:
        """While this process holds leases: every third of their life, each tenant's leases
        renewed (all tenants at once, each call bounded by that third). Ends when none is held
        (the next lease starts it again)."""
        turn = self.lease_ms / 3000
        try:
            while self.held:
                await asyncio.sleep(turn)
                tenants = [t for t, leases in self.held.items() if leases]
                await asyncio.gather(*(self._renew_tenant(t, turn) for t in tenants))
        finally:
            self._renewer = None

    async def _renew_tenant(self, tenant: str, bound_s: float) -> None:
        try:
            async with asyncio.timeout(bound_s), self._lock(tenant):
                leases = sorted(self.held.get(tenant, ()))
                if leases:  # still running here, so counted again even if they had lapsed
                    await self.redis.eval(
                        _RENEW, 1, keys.inference_leases(tenant), self.lease_ms, *leases
                    )
        except Exception as exc:  # tried again at the next turn
            log.warning("inference leases not renewed (%s)", type(exc).__name__)

    async def aclose(self) -> None:
        """Stop renewing and give back what is being given back (at shutdown; the leases still
        held lapse by themselves)."""
        self._closed = True
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        if self._flushes:
            await asyncio.wait(set(self._flushes), timeout=5)


class InferenceSlots:
    """ASGI layer: gives back a request's inference slot once its response is sent (or fails)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})  # made here, so every copy of the scope shares it

        async def sending(message: Message) -> None:
            # the slot is given back before the response's last part goes out: a client that
            # sends its next chat on seeing the end never finds its own slot still taken
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                release = state.pop(_RELEASE, None)
                if release is not None:
                    await asyncio.wait({release()}, timeout=RELEASE_WAIT_S)
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:  # no response, or not all of it: given back in the background
            release = state.pop(_RELEASE, None)
            if release is not None:
                release()
