"""One backend per topology: where commands go, and how to find the primary again after a failure.

Every backend turns off redis-py's own retries (``Retry(NoBackoff(), 0)``) so that one policy,
:mod:`hivemind_common.redis.policy`, decides what is repeated. Sentinel does not use
``Sentinel.master_for``: its connection pool keeps reconnecting to a dead primary (an open
redis-py bug), so the backend asks the Sentinels itself, after an error and every second.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as rex
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError
from redis.backoff import NoBackoff

from hivemind_common.redis.url import RedisTarget

log = logging.getLogger(__name__)

Release = Callable[[bool], Awaitable[None]]

REFRESH_S = 1.0  # how often Sentinel is asked again whether the primary is still the same


def _no_retry() -> Retry:
    return Retry(NoBackoff(), 0)


class Backend(ABC):
    """Where commands run for one topology; subclasses fill in the abstract hooks."""

    topology = "standalone"

    def __init__(self, target: RedisTarget, *, decode_responses: bool) -> None:
        self.target = target
        self.decode_responses = decode_responses
        # "host:port" -> (monotonic time until which it is trusted, replicas connected) for
        # primaries seen with fewer replicas than a durable write wanted
        self.short_of_replicas: dict[str, tuple[float, int]] = {}

    @abstractmethod
    async def client(self) -> Any:
        """The redis-py client commands go to right now."""

    @abstractmethod
    def current(self) -> Any:
        """The client as it is now, without I/O (may be a client not yet connected)."""

    def fresh(self) -> Any:
        """The current client if it may be used without asking anyone first, else None."""
        return self.current()

    @abstractmethod
    async def primary_connection(self, slot: int) -> tuple[Any, Release]:
        """A connected connection to the primary owning ``slot``, and how to give it back."""

    async def on_error(self, exc: BaseException, client: Any) -> None:  # noqa: B027
        """Forget what a failure showed to be stale (a dead primary, an old slot map).

        Nothing to forget by default (standalone); subclasses that cache topology override it.
        """

    @abstractmethod
    async def aclose(self) -> None:
        """Close every connection of this backend."""


async def _pool_connection(client: aioredis.Redis) -> tuple[Any, Release]:
    pool = client.connection_pool
    conn = await pool.get_connection()

    async def release(broken: bool) -> None:
        if broken:
            await conn.disconnect()
        await pool.release(conn)

    return conn, release


class StandaloneBackend(Backend):
    """One server (``redis://`` / ``rediss://``); the pool reconnects by itself."""

    def __init__(self, target: RedisTarget, *, decode_responses: bool) -> None:
        super().__init__(target, decode_responses=decode_responses)
        host, port = target.nodes[0]
        self._client = aioredis.Redis(
            host=host,
            port=port,
            db=target.db,
            decode_responses=decode_responses,
            retry=_no_retry(),
            **target.connection_kwargs(),
        )

    async def client(self) -> Any:
        return self._client

    def current(self) -> Any:
        return self._client

    async def primary_connection(self, slot: int) -> tuple[Any, Release]:
        return await _pool_connection(self._client)

    async def aclose(self) -> None:
        await self._client.aclose()


class SentinelBackend(Backend):
    """A primary found through the Sentinels, and found again after a failure hints at a move."""

    topology = "sentinel"

    def __init__(self, target: RedisTarget, *, decode_responses: bool) -> None:
        super().__init__(target, decode_responses=decode_responses)
        sentinel_kwargs: dict[str, Any] = {
            "socket_timeout": min(target.socket_timeout, 1.0),
            "socket_connect_timeout": min(target.connect_timeout, 1.0),
            "retry": _no_retry(),
        }
        if target.sentinel_password:
            sentinel_kwargs["username"] = target.sentinel_username
            sentinel_kwargs["password"] = target.sentinel_password
        self._sentinels = [
            aioredis.Redis(host=h, port=p, **sentinel_kwargs) for h, p in target.nodes
        ]
        self._service = target.service or ""
        self._current: aioredis.Redis | None = None
        self._address: tuple[str, int] | None = None
        self._resolved_at = 0.0
        self._retired: list[aioredis.Redis] = []
        self._lock = asyncio.Lock()

    async def client(self) -> Any:
        # Re-asking the Sentinels every REFRESH_S also catches a switchover that produced no
        # error here (the old primary, now a replica, would go on answering reads).
        current = self._current
        if current is not None and time.monotonic() - self._resolved_at < REFRESH_S:
            return current
        async with self._lock:
            if self._current is None or time.monotonic() - self._resolved_at >= REFRESH_S:
                await self._resolve()
            assert self._current is not None
            return self._current

    async def _ask(self, sentinel: aioredis.Redis) -> tuple[str, int] | None:
        try:
            reply = await sentinel.execute_command(
                "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self._service
            )
        except (rex.AuthenticationError, rex.AuthorizationError):
            raise  # wrong sentinel credentials: no retry will help
        except (rex.ConnectionError, rex.TimeoutError, OSError):
            return None  # that Sentinel is away; the others may answer
        if not reply or len(reply) != 2:
            return None
        host, port = (x.decode() if isinstance(x, bytes) else str(x) for x in reply)
        return host, int(port)

    async def discover(self) -> tuple[str, int]:
        """The primary most Sentinels name now.

        ``GET-MASTER-ADDR-BY-NAME`` names the promoted replica as soon as it is promoted;
        redis-py's ``discover_master`` reads ``SENTINEL MASTERS``, which keeps the old primary
        until the whole failover is over (seconds later).
        """
        answers = await asyncio.gather(*(self._ask(s) for s in self._sentinels))
        votes = Counter(a for a in answers if a is not None)
        if not votes:
            raise MasterNotFoundError(f"no Sentinel names a primary for {self._service!r}")
        return votes.most_common(1)[0][0]

    async def _resolve(self) -> None:
        try:
            host, port = await self.discover()
        except MasterNotFoundError:
            if self._current is None:
                raise
            self._resolved_at = time.monotonic()  # mid-failover: keep going, errors will tell
            return
        address = (host, int(port))
        if self._current is not None and address != self._address:
            # A new primary: in-flight calls on the old client finish or fail on their own.
            self._retired.append(self._current)
            await self._current.connection_pool.disconnect(inuse_connections=False)
            self._current = None
        if self._current is None:
            log.info("redis sentinel %s: primary is %s:%s", self._service, host, port)
            self._current = aioredis.Redis(
                host=host,
                port=int(port),
                db=self.target.db,
                decode_responses=self.decode_responses,
                retry=_no_retry(),
                **self.target.connection_kwargs(),
            )
        self._address = address
        self._resolved_at = time.monotonic()

    def current(self) -> Any:
        return self._current

    def fresh(self) -> Any:
        if time.monotonic() - self._resolved_at >= REFRESH_S:
            return None  # due for a check with the Sentinels: take the async path
        return self._current

    @property
    def address(self) -> tuple[str, int] | None:
        """The primary's address as last resolved."""
        return self._address

    async def primary_connection(self, slot: int) -> tuple[Any, Release]:
        client = await self.client()
        try:
            return await _pool_connection(client)
        except BaseException as exc:
            await self.on_error(exc, client)
            raise

    async def on_error(self, exc: BaseException, client: Any) -> None:
        # Ask the Sentinels again before the next call; the client is replaced only if they
        # name another primary. Idle sockets to this one go now (they may be dead).
        self._resolved_at = 0.0
        if isinstance(client, aioredis.Redis):
            await client.connection_pool.disconnect(inuse_connections=False)

    async def aclose(self) -> None:
        clients = [*self._retired, *([self._current] if self._current else [])]
        self._current = None
        for c in clients:
            await c.aclose()
        for s in self._sentinels:
            await s.aclose()


class ClusterBackend(Backend):
    """Redis Cluster through redis-py's ``RedisCluster``, which follows MOVED by itself."""

    topology = "cluster"

    def __init__(self, target: RedisTarget, *, decode_responses: bool) -> None:
        super().__init__(target, decode_responses=decode_responses)
        self._client = RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in target.nodes],
            require_full_coverage=False,
            decode_responses=decode_responses,
            retry=_no_retry(),
            **target.connection_kwargs(),
        )

    async def client(self) -> Any:
        return self._client

    def current(self) -> Any:
        return self._client

    async def primary_connection(self, slot: int) -> tuple[Any, Release]:
        await self._client.initialize()
        node = self._client.nodes_manager.get_node_from_slot(slot)
        conn = node.acquire_connection()
        try:
            await conn.connect()
        except BaseException:
            await conn.disconnect()
            node.release(conn)
            await self._forget_node(node)
            raise

        async def release(broken: bool) -> None:
            if broken:
                await conn.disconnect()
                await self._forget_node(node)
            node.release(conn)

        return conn, release

    async def on_error(self, exc: BaseException, client: Any) -> None:
        # Commands: RedisCluster already reacted. Transactions run on our own connection, so a
        # MOVED there patches the slot map, and anything else makes the next call reload it.
        if isinstance(exc, rex.MovedError):
            await self._client.nodes_manager.move_slot(exc)
        else:
            self._client._initialize = True

    async def _forget_node(self, node: ClusterNode) -> None:
        # The same steps RedisCluster takes after a connection error on a command, so the next
        # call re-reads the slot map from another node.
        node.update_active_connections_for_reconnect()
        await node.disconnect_free_connections()
        self._client.nodes_manager.move_node_to_end_of_cached_nodes(node.name)
        self._client._initialize = True  # redis-py has no public "refresh the slot map" call

    async def aclose(self) -> None:
        await self._client.aclose()


def make_backend(target: RedisTarget, *, decode_responses: bool) -> Backend:
    """The backend for ``target.topology``; no I/O."""
    backends: dict[str, Callable[..., Backend]] = {
        "standalone": StandaloneBackend,
        "sentinel": SentinelBackend,
        "cluster": ClusterBackend,
    }
    return backends[target.topology](target, decode_responses=decode_responses)
