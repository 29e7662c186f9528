"""Consent is read again when a cycle trains: a tenant that withdrew trains nothing more."""

from __future__ import annotations

from hivemind_common.tenants import set_policy
from hivemind_trainer.data.consent import consenting


def _record(tenant: str | None, n: int) -> dict[str, object]:
    record: dict[str, object] = {"seq": n, "messages": [{"role": "user", "content": str(n)}]}
    if tenant is not None:
        record["tenant"] = tenant
    return record


async def test_samples_of_a_tenant_that_withdrew_consent_are_left_out_of_training(
    redis_client,
) -> None:
    await set_policy(redis_client, "acme", share_training=True)
    await set_policy(redis_client, "globex", share_training=True)
    parts = {
        "train": [_record("acme", 1), _record("globex", 2), _record(None, 3)],
        "heldout": [_record("globex", 4)],
    }
    kept, dropped = await consenting(redis_client, parts)
    assert (kept, dropped) == (parts, 0)

    await set_policy(redis_client, "globex", share_training=False)  # withdraws after collection
    kept, dropped = await consenting(redis_client, parts)
    assert dropped == 2
    assert [r["seq"] for r in kept["train"]] == [1, 3]  # a record without a tenant is kept
    assert kept["heldout"] == []
