"""Per-tenant quotas on stored items: facts, memories and tool-cache bytes.

The limits live in the tenant's settings hash (``hivemind tenants set``); an absent limit is no
limit. Counts are checked inside the write, against the index the write adds to, so an update of
an existing item always goes through and only a new item past the limit is refused
(``quota_exceeded``, 403: waiting does not help, unlike a rate limit).

Facts and memories: one pipelined round trip (the limit, the index size and whether the item
exists) right before the write's transaction. Two writers racing for the last free place can
both pass, so a tenant can go over by at most the number of writes in flight at that moment.
The tool cache is exact: one Lua script checks, writes the entry and accounts its bytes.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from hivemind_common import keys
from hivemind_common.errors import QuotaExceeded

ItemKind = Literal["facts", "memories"]


def _limit(raw: Any) -> int | None:
    value = int(raw) if raw is not None and str(raw).isdigit() else 0
    return value or None


async def check_item_quota(
    redis: Any, *, tenant: str, kind: ItemKind, index_key: str, member: str | None, adding: int = 1
) -> None:
    """Refuse ``adding`` new items when the tenant's ``max_<kind>`` would be passed.

    ``member`` is the id of the item being written when it may already exist (a fact's key): an
    existing member is an update and always allowed.
    """
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hget(keys.tenant_settings(tenant), f"max_{kind}")
        pipe.zcard(index_key)
        if member is not None:
            pipe.zscore(index_key, member)
        replies = await pipe.execute()
    limit = _limit(replies[0])
    if limit is None or (member is not None and replies[2] is not None):
        return
    if int(replies[1]) + adding > limit:
        raise QuotaExceeded(
            f"tenant {tenant!r} holds {replies[1]} {kind}; its quota is {limit} "
            "(`hivemind tenants set` changes it)",
            extra={"limit": limit, "used": int(replies[1])},
        )


# KEYS: settings, sizes (entry -> bytes), expiry (entry -> ms), total bytes, the entry itself
# ARGV: now (ms), entry name, value, ttl (s)
_CACHE_PUT = """
local now = tonumber(ARGV[1])
local gone = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
local total = tonumber(redis.call('GET', KEYS[4]) or '0')
for _, name in ipairs(gone) do
  total = total - tonumber(redis.call('HGET', KEYS[2], name) or '0')
  redis.call('HDEL', KEYS[2], name)
end
if #gone > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now) end
if total < 0 then total = 0 end
local size = string.len(ARGV[3])
local old = tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '0')
local limit = tonumber(redis.call('HGET', KEYS[1], 'max_cache_bytes') or '0') or 0
if limit > 0 and size > old and total - old + size > limit then
  redis.call('SET', KEYS[4], total)
  return {0, total}
end
total = total - old + size
local ttl = tonumber(ARGV[4])
redis.call('SET', KEYS[5], ARGV[3], 'EX', ttl)
redis.call('HSET', KEYS[2], ARGV[2], size)
redis.call('ZADD', KEYS[3], now + ttl * 1000, ARGV[2])
redis.call('SET', KEYS[4], total)
return {1, total}
"""


async def put_cache_entry(
    redis: Any, *, tenant: str, tool: str, input_hash: str, raw: str, ttl_s: int
) -> int:
    """Store one tool-cache entry within the tenant's byte quota; returns the bytes now held."""
    entry_keys = (
        keys.tenant_settings(tenant),
        keys.tool_cache_sizes(tenant),
        keys.tool_cache_expiry(tenant),
        keys.tool_cache_bytes(tenant),
        keys.tool_cache(tenant, tool, input_hash),
    )
    now_ms = int(time.time() * 1000)
    stored, held = await redis.eval(
        _CACHE_PUT, len(entry_keys), *entry_keys, now_ms, f"{tool}:{input_hash}", raw, ttl_s
    )
    if not int(stored):
        raise QuotaExceeded(
            f"tenant {tenant!r} holds {held} bytes of tool cache; this entry would pass its "
            "quota (`hivemind tenants set --max-cache-mb`)",
            param="value",
            extra={"used": int(held)},
        )
    return int(held)
