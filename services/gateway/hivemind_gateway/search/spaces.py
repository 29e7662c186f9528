"""An item's vectors in every embedding model's space.

Each model that embeds an item stores its own vector (``keys.vector``), so after a switch of the
embedding model a tenant's items hold vectors of the old model too (kept: switching back needs
no re-embedding). The tenant's ``keys.vector_models`` set names every model that has stored one;
a write of a vector adds its model there, and deleting or rewriting an item drops its vectors in
all of them. A vector left behind would keep a deleted item's content (an embedding can be
inverted to much of its text) and, after a switch back, describe an old value.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hivemind_common import keys
from hivemind_common.errors import Invalid


async def vector_models(redis: Any, tenant: str, serving: str | None) -> list[str]:
    """Every model with vectors of ``tenant``'s items, and the serving one."""
    found = await redis.smembers(keys.vector_models(tenant))
    names = {m.decode() if isinstance(m, bytes) else str(m) for m in found}
    if serving:
        names.add(serving)
    return sorted(names)


def drop_vectors(
    tenant: str, kind: str, item_ids: Iterable[str], models: Iterable[str]
) -> list[tuple[Any, ...]]:
    """Commands deleting the items' vectors in each model's space, one DEL per key (documents
    are written by a script that unpacks each command: one DEL of thousands of keys would
    exceed Lua's stack)."""
    ids = list(item_ids)
    commands: list[tuple[Any, ...]] = []
    for model in models:
        try:
            commands.extend(("DEL", keys.vector(tenant, model, kind, i)) for i in ids)
        except Invalid:  # not a name a vector key can carry, so no vector has it
            continue
    return commands


async def drop_late_vectors(
    redis: Any, tenant: str, kind: str, item_ids: list[str], seen: list[str]
) -> None:
    """After a delete: the vectors of models that joined the set while it ran. The record is
    gone now, and a vector is only ever stored with its record current and its model added in
    the same step, so every vector the item can have is of a model in the set from here on."""
    late = [m for m in await vector_models(redis, tenant, None) if m not in seen]
    commands = drop_vectors(tenant, kind, item_ids, late)
    for start in range(0, len(commands), 1000):
        await redis.transaction(*commands[start : start + 1000])


def keep_vector(
    tenant: str, model: str, kind: str, item_id: str, vec: bytes
) -> list[tuple[Any, ...]]:
    """Commands storing one vector and recording its model."""
    return [
        ("SET", keys.vector(tenant, model, kind, item_id), vec),
        ("SADD", keys.vector_models(tenant), model),
    ]
