"""The Redis connector: one URL in, one asyncio client out, the same for every topology.

``connect_redis(url)`` accepts ``redis://``, ``rediss://``, ``redis+cluster://h:p,h:p`` and
``redis+sentinel://h:p,h:p/<service>`` (each with ``user:pass@``) and returns a
:class:`HivemindRedis`. Callers use redis-py's command methods on it (``await r.hset(...)``);
failovers are absorbed by bounded retries (:mod:`.policy` says which operations are repeated).
``transaction()`` runs same-slot commands atomically and, with ``durable=True``, waits (bounded)
for a replica to acknowledge them.
"""

from __future__ import annotations

from hivemind_common.redis.client import HivemindRedis, RedisUnavailable, RetryStats, connect_redis
from hivemind_common.redis.transaction import TransactionResult
from hivemind_common.redis.url import RedisTarget, parse_redis_url

__all__ = [
    "HivemindRedis",
    "RedisTarget",
    "RedisUnavailable",
    "RetryStats",
    "TransactionResult",
    "connect_redis",
    "parse_redis_url",
]
