"""The collector reads the learning stream in a group, stores samples, counts rejections."""

from __future__ import annotations

from pathlib import Path

import pytest

from hivemind_common import keys
from hivemind_common.jobs import LearningSample
from hivemind_trainer.data.collector import Collector
from hivemind_trainer.data.dataset import Dataset
from hivemind_trainer.data.sample_filter import SampleFilter


def sample(i: int, **kw: object) -> LearningSample:
    return LearningSample(
        tenant="acme",
        messages=[
            {"role": "user", "content": f"question number {i} about topic {i * 7}"},
            {
                "role": "assistant",
                "content": f"answer {i}: the value is {i * i} and token sk-{'x' * 24}{i}",
            },
        ],
        **kw,
    )


async def add(redis, s: LearningSample) -> None:
    await redis.xadd(keys.learning_stream(), s.to_fields())


@pytest.fixture(autouse=True)
async def acme_shares_training(redis_client) -> None:
    await redis_client.hset(keys.tenant_settings("acme"), "share_training", "1")


def collector(redis, data_dir: Path, name: str = "c1", idle_ms: int = 60_000) -> Collector:
    return Collector(
        redis,
        Dataset(data_dir / "datasets"),
        SampleFilter(),
        consumer=name,
        reclaim_idle_ms=idle_ms,
    )


async def test_accepted_samples_land_scrubbed_in_the_dataset_and_rejections_are_counted(
    redis_client, data_dir: Path
) -> None:
    for i in range(5):
        await add(redis_client, sample(i))
    await add(redis_client, sample(0))  # exact duplicate
    await add(redis_client, sample(9, rating=0.0))
    await redis_client.xadd(keys.learning_stream(), {"data": "{not json"})
    stats = await collector(redis_client, data_dir).drain()
    assert stats.accepted == 5
    assert stats.rejected == {"duplicate": 1, "negative_rating": 1, "malformed": 1}
    records = list(Dataset(data_dir / "datasets").records())
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert all("sk-xxxx" not in r["messages"][-1]["content"] for r in records)
    assert {r["filter_version"] for r in records} == {"f1"}
    assert await redis_client.hgetall(keys.learning_rejections()) == {
        "duplicate": "1",
        "negative_rating": "1",
        "malformed": "1",
    }
    pending = await redis_client.xpending(keys.learning_stream(), keys.TRAINER_GROUP)
    assert pending["pending"] == 0


async def test_a_crashed_consumers_pending_samples_are_reclaimed_by_another(
    redis_client, data_dir: Path
) -> None:
    first = collector(redis_client, data_dir, "dead")
    await first.ensure_group()
    for i in range(3):
        await add(redis_client, sample(i))
    # "dead" reads but never acknowledges (it crashed)
    await redis_client.xreadgroup(
        keys.TRAINER_GROUP, "dead", {keys.learning_stream(): ">"}, count=10
    )
    survivor = collector(redis_client, data_dir, "alive", idle_ms=0)
    stats = await survivor.collect_once()
    assert stats.accepted == 3
    pending = await redis_client.xpending(keys.learning_stream(), keys.TRAINER_GROUP)
    assert pending["pending"] == 0


def test_the_split_is_stable_and_versions_freeze_new_data_with_replay(tmp_path: Path) -> None:
    from hivemind_trainer.data.dataset import split_of
    from hivemind_trainer.data.sample_filter import Accepted

    ds = Dataset(tmp_path, heldout_fraction=0.2)
    for i in range(1, 101):
        ds.append(
            Accepted(
                f"id{i}",
                "acme",
                "api",
                [{"role": "user", "content": "q"}, {"role": "assistant", "content": f"a{i}"}],
                5,
                f"h{i}",
                0,
                0.0,
            ),
            seq=i,
        )
    assert [split_of(f"id{i}", 0.2) for i in range(50)] == [
        split_of(f"id{i}", 0.2) for i in range(50)
    ]
    first = ds.freeze(after_seq=0, replay_ratio=0.5)
    assert first["counts"]["replay"] == 0 and 10 <= first["counts"]["heldout"] <= 30
    for i in range(101, 121):
        ds.append(
            Accepted(
                f"id{i}",
                "acme",
                "capture",
                [{"role": "user", "content": "q"}, {"role": "assistant", "content": f"a{i}"}],
                5,
                f"h{i}",
                0,
                0.0,
            ),
            seq=i,
        )
    second = ds.freeze(after_seq=100, replay_ratio=0.5)
    assert second["parent"] == first["version"] and second["seq_from"] == 101
    assert second["sources"] == {"capture": 20}
    parts = ds.load_version(second["version"])
    assert len(parts["replay"]) == round(0.5 * len(parts["train"]))
    assert all(r["seq"] <= 100 and r["split"] == "train" for r in parts["replay"])


async def test_samples_of_a_tenant_that_did_not_opt_in_are_skipped_and_counted(
    redis_client, data_dir: Path
) -> None:
    from hivemind_trainer.metrics import SAMPLES

    before = SAMPLES.labels(outcome="not_shared")._value.get()
    await add(redis_client, sample(1))
    for i in range(2):
        await add(redis_client, sample(10 + i).model_copy(update={"tenant": "globex"}))
    await redis_client.hset(keys.tenant_settings("initech"), "share_training", "0")
    await add(redis_client, sample(20).model_copy(update={"tenant": "initech"}))
    stats = await collector(redis_client, data_dir).drain()
    assert (stats.accepted, stats.rejected) == (1, {"not_shared": 3})
    records = list(Dataset(data_dir / "datasets").records())
    assert len(records) == 1 and "question number 1 " in records[0]["messages"][0]["content"]
    assert SAMPLES.labels(outcome="not_shared")._value.get() - before == 3
    assert await redis_client.hgetall(keys.tenant_learning_counts("globex")) == {
        "not_shared": "2",
        "source:api:not_shared": "2",
    }
    assert await redis_client.hgetall(keys.tenant_learning_counts("acme")) == {
        "accepted": "1",
        "source:api:accepted": "1",
    }
    # every skipped sample is acknowledged: nothing stays pending for a later pass
    pending = await redis_client.xpending(keys.learning_stream(), keys.TRAINER_GROUP)
    assert pending["pending"] == 0


async def test_samples_are_counted_by_source_and_outcome_for_the_suite_and_each_tenant(
    redis_client, data_dir: Path
) -> None:
    from hivemind_common.job_records import learning_status, tenant_learning_status

    for i in range(3):
        await add(redis_client, sample(i, source="claude-code"))
    await add(redis_client, sample(0, source="claude-code"))  # duplicate: rejected
    await add(redis_client, sample(5, source="aider"))
    await add(redis_client, sample(6, source="aider").model_copy(update={"tenant": "globex"}))
    await redis_client.xadd(keys.learning_stream(), {"data": "{not json"})  # no source known
    await collector(redis_client, data_dir).drain()

    suite = (await learning_status(redis_client))["samples"]["by_source"]
    assert suite == {
        "aider": {"accepted": 1, "not_shared": 1},
        "claude-code": {"accepted": 3, "rejected": 1},
    }
    acme = (await tenant_learning_status(redis_client, "acme"))["samples"]["by_source"]
    assert acme == {"aider": {"accepted": 1}, "claude-code": {"accepted": 3, "rejected": 1}}
    globex = (await tenant_learning_status(redis_client, "globex"))["samples"]["by_source"]
    assert globex == {"aider": {"not_shared": 1}}


async def test_source_labels_beyond_the_bound_count_as_other(
    redis_client, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hivemind_common.job_records import learning_status

    monkeypatch.setattr(keys, "LEARNING_SOURCES_MAX", 2)
    for i, source in enumerate(["one", "two", "three", "one"]):
        await add(redis_client, sample(i, source=source))
    await collector(redis_client, data_dir).drain()
    by_source = (await learning_status(redis_client))["samples"]["by_source"]
    assert by_source == {"one": {"accepted": 2}, "two": {"accepted": 1}, "other": {"accepted": 1}}


def test_a_line_torn_by_a_crash_never_swallows_the_next_sample(tmp_path: Path) -> None:
    """A kill mid-write leaves a torn last line (cut inside a character, even). The next append
    was glued onto it, and that sample, fsynced and acknowledged, could never be read."""
    from hivemind_trainer.data.sample_filter import Accepted

    def sample(i: int) -> Accepted:
        turns = [{"role": "user", "content": "q"}, {"role": "assistant", "content": f"é{i}"}]
        return Accepted(f"id{i}", "acme", "api", turns, 5, f"h{i}", 0, 0.0)

    ds = Dataset(tmp_path)
    ds.append(sample(1), seq=1)
    whole = ds.accepted_path.read_bytes()
    ds.append(sample(2), seq=2)
    second = ds.accepted_path.read_bytes()[len(whole) :]
    cut = second.index("é".encode()) + 1  # inside the two bytes of "é"
    ds.accepted_path.write_bytes(whole + second[:cut])  # the crash
    ds.append(sample(3), seq=3)
    assert [r["id"] for r in ds.records()] == ["id1", "id3"]
    ds.append(sample(4), seq=4)  # a clean end stays as it was
    assert [r["id"] for r in ds.records()] == ["id1", "id3", "id4"]
