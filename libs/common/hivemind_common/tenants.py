"""A tenant's policy: training consent, quotas and request rate, in the tenant's settings hash.

Written by ``hivemind tenants set`` (and, for ``share_training``, by the first operator key of a
tenant); read by the gateway (quotas, rate) and the trainer (consent). An absent limit means no
limit; ``share_training`` is off unless set.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from hivemind_common import keys
from hivemind_common.errors import Invalid
from hivemind_common.redis import HivemindRedis

LIMIT_FIELDS = (
    "max_facts", "max_memories", "max_sessions", "max_docs", "max_cache_bytes", "rpm"
)  # fmt: skip


@dataclass(frozen=True)
class TenantPolicy:
    """What a tenant may store and send, and whether its chats train the shared model."""

    tenant: str
    share_training: bool = False
    capture: bool | None = None
    max_facts: int | None = None
    max_memories: int | None = None
    max_sessions: int | None = None
    max_docs: int | None = None  # reference library documents
    max_cache_bytes: int | None = None
    rpm: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _int(raw: str | None) -> int | None:
    return int(raw) if raw and raw.isdigit() and int(raw) > 0 else None


def _check_tenant(tenant: str) -> None:
    if not keys.valid_tenant(tenant):
        raise Invalid("tenant must be 1-64 letters, digits, '.', '_' or '-'", param="tenant")


async def get_policy(redis: HivemindRedis, tenant: str) -> TenantPolicy:
    """The tenant's policy (defaults where nothing was set)."""
    _check_tenant(tenant)
    raw = await redis.hgetall(keys.tenant_settings(tenant))
    capture = raw.get("capture")
    return TenantPolicy(
        tenant=tenant,
        share_training=raw.get("share_training") == "1",
        capture=None if capture is None else capture.lower() in ("1", "true", "yes", "on"),
        **{name: _int(raw.get(name)) for name in LIMIT_FIELDS},
    )


async def set_policy(
    redis: HivemindRedis, tenant: str, *, share_training: bool | None = None, **limits: int | None
) -> TenantPolicy:
    """Change some of a tenant's settings; a limit of 0 removes it, None leaves it as it is."""
    _check_tenant(tenant)
    unknown = set(limits) - set(LIMIT_FIELDS)
    if unknown:
        raise Invalid(f"unknown tenant limit(s): {', '.join(sorted(unknown))}")
    key = keys.tenant_settings(tenant)
    commands: list[tuple[Any, ...]] = []
    if share_training is not None:
        commands.append(("HSET", key, "share_training", "1" if share_training else "0"))
    for name, value in limits.items():
        if value is None:
            continue
        if value < 0:
            raise Invalid(f"{name} must be 0 (no limit) or more", param=name)
        commands.append(("HSET", key, name, str(value)) if value else ("HDEL", key, name))
    if commands:
        await redis.transaction(*commands, durable=True)
    return await get_policy(redis, tenant)


__all__ = ["LIMIT_FIELDS", "TenantPolicy", "get_policy", "set_policy"]
