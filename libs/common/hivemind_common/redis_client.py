"""Compatibility name for the Redis connector; the code lives in :mod:`hivemind_common.redis`."""

from __future__ import annotations

from hivemind_common.redis import (
    HivemindRedis,
    RedisTarget,
    RedisUnavailable,
    RetryStats,
    TransactionResult,
    connect_redis,
    parse_redis_url,
)

__all__ = [
    "HivemindRedis",
    "RedisTarget",
    "RedisUnavailable",
    "RetryStats",
    "TransactionResult",
    "connect_redis",
    "parse_redis_url",
]
