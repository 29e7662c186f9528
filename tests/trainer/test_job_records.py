"""Job records: durable hashes that move through stages and never leave a final status."""

from __future__ import annotations

import pytest

from hivemind_common.errors import Invalid, NotFound
from hivemind_common.job_records import create_job, get_job, list_jobs, update_job


async def test_a_new_job_is_queued_and_readable(redis_client) -> None:
    rec = await create_job(redis_client, "j1", requested_by="api", reason="manual")
    assert rec.status == "queued" and rec.stage == "queued"
    got = await get_job(redis_client, "j1")
    assert got.public() == {k: v for k, v in rec.public().items()}
    assert "version" not in got.public()


async def test_updates_move_stage_and_record_version_and_error(redis_client) -> None:
    await create_job(redis_client, "j2")
    await update_job(redis_client, "j2", status="running", stage="train")
    rec = await update_job(redis_client, "j2", status="rejected", stage="done", version="v1")
    assert (rec.status, rec.stage, rec.version) == ("rejected", "done", "v1")


async def test_a_finished_job_keeps_its_final_status(redis_client) -> None:
    await create_job(redis_client, "j3")
    await update_job(redis_client, "j3", status="succeeded", stage="done")
    rec = await update_job(redis_client, "j3", status="failed", error="late duplicate")
    assert rec.status == "succeeded"


async def test_unknown_jobs_and_bad_statuses_are_clear_errors(redis_client) -> None:
    with pytest.raises(NotFound):
        await get_job(redis_client, "nope")
    await create_job(redis_client, "j4")
    with pytest.raises(Invalid):
        await update_job(redis_client, "j4", status="exploded")


async def test_jobs_are_listed_newest_first(redis_client) -> None:
    for i in range(3):
        await create_job(redis_client, f"k{i}")
    ids = [j.job_id for j in await list_jobs(redis_client, limit=2)]
    assert ids == ["k2", "k1"]


async def test_each_stage_keeps_the_time_the_job_first_reached_it(redis_client) -> None:
    created = await create_job(redis_client, "j9")
    assert created.stage_started is not None and list(created.stage_started) == ["queued"]
    await update_job(redis_client, "j9", status="running", stage="train")
    first = (await get_job(redis_client, "j9")).stage_started
    assert first is not None
    await update_job(redis_client, "j9", stage="train")  # a retried step keeps the first time
    await update_job(redis_client, "j9", stage="export")
    rec = await get_job(redis_client, "j9")
    assert rec.stage_started is not None
    assert list(rec.stage_started) == ["queued", "train", "export"]
    assert rec.stage_started["train"] == first["train"]
    assert rec.stage_started["queued"] <= rec.stage_started["train"] <= rec.stage_started["export"]
    assert rec.public()["stage_started"] == rec.stage_started


async def test_a_stage_update_stays_a_replayable_transaction(redis_client) -> None:
    """Only idempotent commands (HSET, EXPIRE), so a cut-off update can be retried safely."""
    from hivemind_common.redis import policy

    sent: list[tuple[str, ...]] = []
    real = redis_client.transaction

    async def spy(*commands: tuple[str, ...], **kw: object):  # type: ignore[no-untyped-def]
        sent.extend(commands)
        return await real(*commands, **kw)

    await create_job(redis_client, "j10")
    redis_client.transaction = spy
    try:
        await update_job(redis_client, "j10", status="running", stage="train")
    finally:
        del redis_client.transaction
    assert [c[0] for c in sent] == ["HSET", "EXPIRE"]
    assert all(policy.is_idempotent(policy.raw_name(c), c[1:], raw=True) for c in sent)
