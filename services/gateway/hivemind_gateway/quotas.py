"""Per-tenant quotas on stored items: facts, memories, sessions, documents and tool-cache bytes.

The limits live in the tenant's settings hash (``hivemind tenants set``); an absent limit is no
limit. Counts are checked inside the write, against the index the write adds to, so an update of
an existing item always goes through and only a new item past the limit is refused
(``quota_exceeded``, 403: waiting does not help, unlike a rate limit).

Facts and memories: one Lua script checks the limit against the index and the places reserved
by writes in flight, and reserves a place; the write's own MULTI/EXEC adds the item and drops the
reservation together, so racing writers never pass the limit. The tool cache: one Lua script
checks, writes the entry and accounts its bytes.
"""

from __future__ import annotations

import secrets
import time
from typing import Any, Literal

from hivemind_common import keys
from hivemind_common.errors import Conflict, QuotaExceeded

ItemKind = Literal["facts", "memories", "sessions", "docs"]


# KEYS: settings, index, reservations; ARGV: limit field, member ("" none), adding, now, token,
# "check" (only say whether there is room) or "", the score below which an index entry has
# expired ("" none: live sessions are those written within SESSION_TTL_S)
# A reservation is a member "<token>:<n>" of the reservations set, scored by when it lapses.
_RESERVE = """
local limit = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') or 0
if limit <= 0 then return {1, 0} end
if ARGV[7] ~= '' then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[7]) end
if ARGV[2] ~= '' and redis.call('ZSCORE', KEYS[2], ARGV[2]) then return {1, 0} end
local now = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local used = redis.call('ZCARD', KEYS[2])
for _, held in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  used = used + tonumber(string.match(held, ':(%d+)$'))
end
if used + tonumber(ARGV[3]) > limit then return {0, used, limit} end
if ARGV[6] == 'check' then return {1, used} end
redis.call('ZADD', KEYS[3], now + RESERVATION_MS, ARGV[5] .. ':' .. ARGV[3])
redis.call('PEXPIRE', KEYS[3], RESERVATION_MS)
return {2, used}
""".replace("RESERVATION_MS", "30000")


def _stale_before(kind: ItemKind) -> str:
    """The index score below which an entry no longer counts: a session not written for
    ``SESSION_TTL_S`` has expired (its keys are gone), and only the next write to some session
    pruned it from the index, so a tenant at its limit whose sessions had all expired was
    refused every new one."""
    return f"{time.time() - keys.SESSION_TTL_S:.6f}" if kind == "sessions" else ""


async def reserve_items(
    redis: Any,
    *,
    tenant: str,
    kind: ItemKind,
    index_key: str,
    member: str | None,
    adding: int = 1,
    check_only: bool = False,
) -> list[tuple[Any, ...]]:
    """Room for ``adding`` new items under the tenant's ``max_<kind>``, or QuotaExceeded.

    Check and reservation are one atomic script; the commands returned go into the write's own
    transaction, which turns the reservation into the items (a write that never happens frees
    its place after 30 s). ``member`` is the id of an item that may already exist (a fact's key):
    rewriting it is an update and always allowed. ``check_only``: QuotaExceeded if there is
    no room for ``adding`` now, but nothing is reserved (a batch's check before its items
    reserve their places one by one).
    """
    token = secrets.token_hex(8)
    reservations = keys.quota_reservations(tenant, kind)
    script_keys = (keys.tenant_settings(tenant), index_key, reservations)
    reply = await redis.eval(
        _RESERVE,
        len(script_keys),
        *script_keys,
        f"max_{kind}",
        member or "",
        adding,
        int(time.time() * 1000),
        token,
        "check" if check_only else "",
        _stale_before(kind),
    )
    if int(reply[0]) == 0:
        used, limit = int(reply[1]), int(reply[2])
        raise QuotaExceeded(
            f"tenant {tenant!r} holds {used} {kind}; its quota is {limit} "
            "(`hivemind tenants set` changes it)",
            extra={"limit": limit, "used": used},
        )
    if int(reply[0]) == 1:  # no limit, or an update: nothing reserved
        return []
    return [("ZREM", reservations, f"{token}:{adding}")]


# Lua: run the commands packed by :func:`pack_commands`, from ARGV[at] on (their count is
# ARGV[at - 1]); their replies, in order, in ``replies``.
RUN_PACKED = """
local replies = {}
for c = 1, tonumber(ARGV[at - 1]) do
  local n = tonumber(ARGV[at])
  replies[c] = redis.call(unpack(ARGV, at + 1, at + n))
  at = at + n + 1
end
"""


def pack_commands(commands: list[tuple[Any, ...]]) -> tuple[list[str], list[Any]]:
    """The keys ``commands`` touch (declared to the script, so a key outside the slot is refused
    before anything runs) and the ARGV tail :data:`RUN_PACKED` reads: the commands' count, then
    each one's argument count followed by its arguments."""
    touched = list(dict.fromkeys(str(c[1]) for c in commands if len(c) > 1))
    argv: list[Any] = [len(commands)]
    for command in commands:
        argv += [len(command), *command]
    return touched, argv


# The check of _RESERVE and the write itself in one script: nothing to reserve, since no other
# write can come between them. KEYS: settings, index, reservations, then every key the commands
# touch; ARGV: limit field, member ("" none), adding, now (ms), the key that must be absent
# ("" none), the score below which an index entry has expired ("" none), then the packed
# commands.
_GUARDED = (
    """
if ARGV[5] ~= '' and redis.call('EXISTS', ARGV[5]) == 1 then return {2} end
local limit = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') or 0
if limit > 0 and ARGV[6] ~= '' then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[6]) end
if limit > 0 and not (ARGV[2] ~= '' and redis.call('ZSCORE', KEYS[2], ARGV[2])) then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', tonumber(ARGV[4]))
  local used = redis.call('ZCARD', KEYS[2])
  for _, held in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
    used = used + tonumber(string.match(held, ':(%d+)$'))
  end
  if used + tonumber(ARGV[3]) > limit then return {0, used, limit} end
end
local at = 8
"""
    + RUN_PACKED
    + "return {1, replies}\n"
)


async def write_within_quota(
    redis: Any,
    *,
    tenant: str,
    kind: ItemKind,
    index_key: str,
    member: str | None,
    commands: list[tuple[Any, ...]],
    adding: int = 1,
    absent: str | None = None,
) -> list[Any]:
    """Check room for ``adding`` new items and run ``commands`` in one script, in one durable
    transaction: one round trip where :func:`reserve_items` and the write's MULTI/EXEC take
    two. The commands' replies come back in order, as a script returns them (a hash is a flat
    list of fields and values). QuotaExceeded, and nothing written, when there is no room.
    ``absent``: a key (one the commands write) that must not exist; Conflict, and nothing
    written, when it does (a create racing another create)."""
    touched, packed = pack_commands(commands)
    script_keys = (
        keys.tenant_settings(tenant),
        index_key,
        keys.quota_reservations(tenant, kind),
        *touched,
    )
    if absent is not None and absent not in touched:
        raise ValueError("absent must be a key the commands write")
    argv: list[Any] = [
        f"max_{kind}",
        member or "",
        adding,
        int(time.time() * 1000),
        absent or "",
        _stale_before(kind),
        *packed,
    ]
    result = await redis.transaction(
        ("EVAL", _GUARDED, len(script_keys), *script_keys, *argv), durable=True
    )
    reply = result[0]
    if int(reply[0]) == 2:
        raise Conflict("it already exists")
    if int(reply[0]) == 0:
        used, limit = int(reply[1]), int(reply[2])
        raise QuotaExceeded(
            f"tenant {tenant!r} holds {used} {kind}; its quota is {limit} "
            "(`hivemind tenants set` changes it)",
            extra={"limit": limit, "used": used},
        )
    return list(reply[1])


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
