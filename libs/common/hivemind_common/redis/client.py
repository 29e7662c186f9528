"""``HivemindRedis``: redis-py's command methods under one retry policy, durable transactions."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from redis.crc import key_slot

from hivemind_common.errors import Invalid, Unavailable
from hivemind_common.redis import policy
from hivemind_common.redis.pipeline import RetryingPipeline
from hivemind_common.redis.topology import Backend, make_backend
from hivemind_common.redis.transaction import TransactionResult, run_transaction
from hivemind_common.redis.url import RedisTarget, parse_redis_url

log = logging.getLogger(__name__)

# Methods returning objects bound to one connection or client; they get no retry.
_PASS_THROUGH = frozenset({"pubsub", "lock", "monitor"})


@dataclass
class RetryStats:
    """What the retry policy did on one client (the Prometheus counters hold the same, globally)."""

    retried_operations: int = 0
    retries: int = 0
    failed_operations: int = 0
    longest_retry_s: float = 0.0


class RedisUnavailable(Unavailable):
    """Redis could not be reached (or stayed unreachable past the retry deadline), or a strong
    write was not acknowledged by a replica. Retryable: it carries ``Retry-After``."""

    def __init__(self, message: str | None = None, *, retry_after: float = 1.0, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.headers.setdefault("Retry-After", str(max(1, round(retry_after))))


class HivemindRedis:
    """An asyncio Redis client that behaves alike on standalone, cluster and sentinel.

    Attribute access gives redis-py's command methods (``await r.hset(...)``); awaited ones run
    under the retry policy of :mod:`hivemind_common.redis.policy`. ``pipeline()`` batches are
    replayed as a whole under the same policy, and ``transaction()`` adds durable writes.
    ``pubsub``, ``lock``, ``monitor`` and other helpers that return a plain value come from the
    current client as they are, with no retry (on Sentinel, ``await r.initialize()`` first).
    """

    def __init__(self, url: str, target: RedisTarget, *, decode_responses: bool = True) -> None:
        self.url = url
        self.target = target
        self.decode_responses = decode_responses
        self.topology: str = target.topology
        self.stats = RetryStats()
        self._backend: Backend = make_backend(target, decode_responses=decode_responses)
        self._twin: HivemindRedis | None = None

    def __repr__(self) -> str:
        nodes = ",".join(f"{h}:{p}" for h, p in self.target.nodes)
        return f"HivemindRedis(topology={self.topology!r}, nodes={nodes!r})"

    # -- plumbing ------------------------------------------------------------------------------
    @property
    def raw(self) -> Any:
        """The redis-py client underneath now (on Sentinel it changes after a failover)."""
        current = self._backend.current()
        if current is None:
            raise RedisUnavailable(
                "redis sentinel primary not resolved yet: await r.initialize() (or any command)"
            )
        return current

    def pipeline(self, transaction: bool = False, shard_hint: Any = None) -> RetryingPipeline:
        """A batch sent in one round trip, retried as a whole (see :mod:`.pipeline`).

        ``transaction=True`` wraps it in MULTI/EXEC (all keys in one slot on Cluster); use
        :meth:`transaction` when the write must be durable.
        """
        return RetryingPipeline(self, transaction=transaction)

    async def scan_iter(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        """``SCAN`` over every key (every primary on Cluster); not retried mid-iteration."""
        client = await self._backend.client()
        async for item in client.scan_iter(*args, **kwargs):
            yield item

    async def initialize(self) -> HivemindRedis:
        """Find the primary (Sentinel) or load the slot map (Cluster) now, with retries.

        Optional: the first command does it too. Call it in a lifespan to fail early, and before
        using ``raw``/``pipeline`` on Sentinel.
        """

        async def attempt() -> None:
            client = await self._backend.client()
            try:
                await client.ping()
            except Exception as exc:
                if policy.is_retryable(exc):
                    await self._backend.on_error(exc, client)
                raise

        await self.with_retry(attempt, idempotent=True, what="PING")
        return self

    @property
    def backend(self) -> Backend:
        return self._backend

    def binary(self) -> HivemindRedis:
        """A twin with ``decode_responses=False`` for binary values (vectors); closed with us."""
        if not self.decode_responses:
            return self
        if self._twin is None:
            self._twin = HivemindRedis(self.url, self.target, decode_responses=False)
        return self._twin

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name in _PASS_THROUGH:
            return getattr(self.raw, name)
        current = self._backend.current()
        # Before Sentinel names a primary there is no client to ask; every other name is a
        # command method, and a wrong one fails with AttributeError when awaited.
        attr = getattr(current, name) if current is not None else None
        if current is not None and not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            client = self._backend.fresh()
            if client is None:
                return self._call(name, args, kwargs, None)
            # Call now: redis-py's command methods return a coroutine, helpers (keyslot,
            # register_script …) a plain value, which goes back as it is.
            first = getattr(client, name)(*args, **kwargs)
            if not inspect.isawaitable(first):
                return first
            return self._call(name, args, kwargs, (client, first))

        call.__name__ = name
        call.__doc__ = getattr(attr, "__doc__", None)
        return call

    async def _call(
        self,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        first: tuple[Any, Awaitable[Any]] | None,
    ) -> Any:
        command = policy.command_name(name, args)
        raw = name == "execute_command"
        idempotent = policy.is_idempotent(command, args[1:] if raw else args, kwargs, raw=raw)
        pending = [first]

        async def attempt() -> Any:
            ready = pending.pop() if pending else None
            if ready is not None:
                client, result = ready
            else:
                client = await self._backend.client()
                result = getattr(client, name)(*args, **kwargs)
            try:
                return await result if inspect.isawaitable(result) else result
            except Exception as exc:
                if policy.is_retryable(exc):
                    await self._backend.on_error(exc, client)
                raise

        return await self.with_retry(attempt, idempotent=idempotent, what=command)

    async def with_retry(
        self, attempt: Callable[[], Awaitable[Any]], *, idempotent: bool, what: str = "op"
    ) -> Any:
        """Run ``attempt`` until it succeeds, the error is not retryable, or the deadline passes."""
        started = time.monotonic()
        deadline = started + self.target.retry_deadline
        tries = 0
        while True:
            try:
                result = await attempt()
            except Exception as exc:
                retry_ok = policy.is_retryable(exc) and (idempotent or policy.never_applied(exc))
                now = time.monotonic()
                if not retry_ok or now >= deadline:
                    if tries:
                        self.stats.failed_operations += 1
                        policy.FAILED_OPERATIONS.labels(self.topology).inc()
                    if isinstance(exc, policy.NotReplicated):
                        raise RedisUnavailable(
                            f"redis {self.topology}: {what} not acknowledged by a replica "
                            f"({exc}); it was not stored durably: retry it with the same ids",
                            code="store_not_replicated",
                        ) from exc
                    if retry_ok:
                        raise RedisUnavailable(
                            f"redis {self.topology}: {what} still failing after "
                            f"{now - started:.1f}s ({policy.error_kind(exc)})"
                        ) from exc
                    if policy.is_retryable(exc):  # cut off mid-flight, not safe to repeat
                        raise RedisUnavailable(
                            f"redis {self.topology}: connection lost during {what}; it may or "
                            f"may not have been applied ({policy.error_kind(exc)})"
                        ) from exc
                    raise
                if tries == 0:
                    self.stats.retried_operations += 1
                    policy.RETRIED_OPERATIONS.labels(self.topology, policy.error_kind(exc)).inc()
                    log.info(
                        "redis %s: retrying %s after %s",
                        self.topology,
                        what,
                        policy.error_kind(exc),
                    )
                self.stats.retries += 1
                await asyncio.sleep(min(policy.backoff_delay(tries), max(0.0, deadline - now)))
                tries += 1
                continue
            if tries:
                self.stats.longest_retry_s = max(
                    self.stats.longest_retry_s, time.monotonic() - started
                )
            return result

    # -- transactions --------------------------------------------------------------------------
    async def transaction(
        self,
        *commands: tuple[Any, ...],
        durable: bool = False,
        wait_replicas: int | None = None,
        wait_timeout_ms: int | None = None,
    ) -> TransactionResult:
        """Run command tuples (all keys in one slot) in MULTI/EXEC on one primary connection.

        With ``durable=True`` and ``wait_replicas`` > 0 (default 1 on cluster and sentinel, 0 on
        standalone; ``?wait_replicas=`` in the URL changes it), ``WAIT`` follows ``EXEC`` on the
        same connection. With ``?durability=available`` (the default) a WAIT that times out does
        not fail the write: the result's ``replicas`` says how many acknowledged, and
        ``hivemind_redis_wait_shortfall_total`` counts it. With ``?durability=strong`` a shortfall
        is retried like a failover (only if idempotent, unless the write was refused before it
        ran) and then raised as :class:`RedisUnavailable` (503, ``store_not_replicated``). The
        whole transaction is retried across a failover when every command is idempotent, or when
        the error proves nothing was applied (see :mod:`hivemind_common.redis.policy`).
        """
        if not commands:
            raise Invalid("a transaction needs at least one command")
        slot = _common_slot(commands)
        replicas = self.target.wait_replicas if wait_replicas is None else wait_replicas
        timeout_ms = self.target.wait_timeout_ms if wait_timeout_ms is None else wait_timeout_ms
        wait = (replicas, timeout_ms) if durable and replicas > 0 else None
        idempotent = all(
            policy.is_idempotent(policy.raw_name(c), c[1:], raw=True) for c in commands
        )
        state = {"attempt": 0}

        async def attempt() -> TransactionResult:
            state["attempt"] += 1
            return await run_transaction(
                self._backend,
                slot,
                commands,
                wait=wait,
                retried=state["attempt"] > 1,
                topology=self.topology,
                strong=self.target.durability == "strong",
            )

        return await self.with_retry(attempt, idempotent=idempotent, what="MULTI/EXEC")

    async def __aenter__(self) -> HivemindRedis:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every connection (the binary twin's too)."""
        if self._twin is not None:
            await self._twin.aclose()
            self._twin = None
        await self._backend.aclose()


def _common_slot(commands: tuple[tuple[Any, ...], ...]) -> int:
    """The one cluster slot all keys share (each command's first argument; a script's keys)."""
    slots = set()
    for cmd in commands:
        if not isinstance(cmd, tuple | list) or not cmd:
            raise Invalid("each transaction command is a non-empty tuple like ('HSET', key, f, v)")
        for key in _command_keys(cmd):
            slots.add(key_slot(key if isinstance(key, bytes) else str(key).encode()))
    if len(slots) > 1:
        raise Invalid("all keys of a transaction must share one hash slot (use a {hash tag})")
    return slots.pop() if slots else 0


def _command_keys(cmd: tuple[Any, ...] | list[Any]) -> list[Any]:
    """The keys a transaction command names: a script's declared keys, else its first argument."""
    if policy.raw_name(tuple(cmd)) in ("EVAL", "EVALSHA") and len(cmd) > 2:
        count = int(cmd[2])
        return list(cmd[3 : 3 + count])
    return [cmd[1]] if len(cmd) > 1 else []


def connect_redis(
    url: str, *, decode_responses: bool = True, retry_deadline: float | None = None
) -> HivemindRedis:
    """Build the client for ``url`` (any of the four forms in SPEC.md); nothing is sent yet.

    ``retry_deadline`` replaces the default deadline (30 s, sized for a failover) unless the
    URL sets its own ``?retry_deadline=``: a command-line tool gives up sooner than a service.
    """
    target = parse_redis_url(url)
    if retry_deadline is not None and "retry_deadline=" not in url.partition("?")[2]:
        target = replace(target, retry_deadline=retry_deadline)
    return HivemindRedis(url, target, decode_responses=decode_responses)
