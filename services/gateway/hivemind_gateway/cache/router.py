"""Routes of the tool cache: a tool's output by the hash of its input, per tenant, with a TTL."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from hivemind_common import keys
from hivemind_common.auth import ReadPrincipal, WritePrincipal
from hivemind_common.errors import NotFound, TooLarge
from hivemind_common.ids import NAME_PATTERN, TOKEN_PATTERN
from hivemind_common.json_codec import dumps_str, loads
from hivemind_gateway.cache.schemas import CacheEntryCreate, CacheEntryPublic
from hivemind_gateway.deps import RedisDep, SettingsDep
from hivemind_gateway.quotas import put_cache_entry

router = APIRouter(prefix="/v1/cache", tags=["cache"])

Tool = Annotated[str, Path(pattern=NAME_PATTERN)]
InputHash = Annotated[str, Path(pattern=TOKEN_PATTERN)]


@router.put("/{tool}/{input_hash}", response_model=CacheEntryPublic)
async def put_entry(
    tool: Tool,
    input_hash: InputHash,
    body: CacheEntryCreate,
    principal: WritePrincipal,
    redis: RedisDep,
    settings: SettingsDep,
) -> CacheEntryPublic:
    """Store a tool's output (any JSON) for ``ttl_s`` seconds."""
    raw = dumps_str(body.value)  # its strings were checked as text when the body was read
    if len(raw) > settings.max_fact_value_chars * 4:
        raise TooLarge(f"value is {len(raw)} characters as JSON", param="value")
    await put_cache_entry(
        redis,
        tenant=principal.tenant,
        tool=tool,
        input_hash=input_hash,
        raw=raw,
        ttl_s=body.ttl_s,
    )
    return CacheEntryPublic(
        tool=tool, input_hash=input_hash, value=body.value, expires_in=body.ttl_s
    )


@router.get("/{tool}/{input_hash}", response_model=CacheEntryPublic)
async def get_entry(
    tool: Tool, input_hash: InputHash, principal: ReadPrincipal, redis: RedisDep
) -> CacheEntryPublic:
    key = keys.tool_cache(principal.tenant, tool, input_hash)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.get(key)
        pipe.ttl(key)
        raw, ttl = await pipe.execute()
    if raw is None:
        raise NotFound(f"no cached {tool} output for {input_hash}")
    return CacheEntryPublic(
        tool=tool, input_hash=input_hash, value=loads(raw), expires_in=max(int(ttl), 0)
    )
