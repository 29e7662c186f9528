"""Consent read again when a cycle trains, not only when a sample is collected.

A tenant that withdraws (``hivemind tenants set <t> --no-share-training``) stops new samples at
collection; the samples it gave before are still in the dataset. A cycle keeps only the records
of tenants that consent *now*, so a withdrawal reaches every later training run. Records made
before samples carried a tenant have none and are kept (they came from the operator's loop).
"""

from __future__ import annotations

from hivemind_common.redis import HivemindRedis
from hivemind_common.tenants import get_policy
from hivemind_trainer.data.dataset import Record


async def consenting(
    redis: HivemindRedis, parts: dict[str, list[Record]]
) -> tuple[dict[str, list[Record]], int]:
    """``parts`` without the records of tenants that no longer share; and how many were left out."""
    tenants = {r.get("tenant") for records in parts.values() for r in records} - {None, ""}
    withdrawn = set()
    for tenant in tenants:
        if not (await get_policy(redis, str(tenant))).share_training:
            withdrawn.add(tenant)
    if not withdrawn:
        return parts, 0
    kept = {
        part: [r for r in records if r.get("tenant") not in withdrawn]
        for part, records in parts.items()
    }
    dropped = sum(len(records) for records in parts.values()) - sum(len(r) for r in kept.values())
    return kept, dropped
