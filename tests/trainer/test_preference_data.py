"""Corrections become preference pairs, ratings mark answers good or bad (the preference data)."""

from __future__ import annotations

from pathlib import Path

from hivemind_common import keys
from hivemind_common.jobs import LearningSample
from hivemind_trainer.data.collector import Collector
from hivemind_trainer.data.dataset import Dataset
from hivemind_trainer.data.sample_filter import SampleFilter
from hivemind_trainer.preference.data import (
    PreferenceStore,
    load_preference_data,
    preference_record,
)
from hivemind_trainer.preference.stage import choose_stage

SECRET = "sk-" + "b" * 30


def chat(i: int, answer: str) -> list[dict[str, str]]:
    return [
        {"role": "user", "content": f"How do I sort list number {i}?"},
        {"role": "assistant", "content": answer},
    ]


def test_a_correction_is_a_pair_and_ratings_are_good_or_bad() -> None:
    pair = preference_record(
        LearningSample(
            tenant="t", messages=chat(1, f"Use sort. {SECRET}"), correction="Use sorted()."
        ),
        min_rating=0.5,
        heldout_fraction=0.0,
    )
    assert pair is not None and pair["label"] == "pair" and pair["split"] == "train"
    assert pair["chosen"] == "Use sorted()." and SECRET not in pair["rejected"]
    assert pair["prompt"] == chat(1, "")[:1]
    good = preference_record(
        LearningSample(tenant="t", messages=chat(2, "Use sorted()."), rating=1.0),
        min_rating=0.5,
        heldout_fraction=0.0,
    )
    bad = preference_record(
        LearningSample(tenant="t", messages=chat(3, "No idea."), rating=0.0),
        min_rating=0.5,
        heldout_fraction=0.0,
    )
    assert good is not None and good["label"] == "good" and good["chosen"] == "Use sorted()."
    assert bad is not None and bad["label"] == "bad" and bad["rejected"] == "No idea."
    plain = LearningSample(tenant="t", messages=chat(4, "x"))
    assert preference_record(plain, min_rating=0.5, heldout_fraction=0.0) is None
    no_answer = LearningSample(tenant="t", messages=chat(5, "x")[:1], correction="y")
    assert preference_record(no_answer, min_rating=0.5, heldout_fraction=0.0) is None

    data = load_preference_data([pair, good, bad, {**pair, "id": "h", "split": "heldout"}])
    assert data.counts() == {"pairs": 1, "good": 1, "bad": 1, "heldout_pairs": 1}
    assert choose_stage(data, min_pairs=1, min_rated=2) == "dpo"
    assert choose_stage(data, min_pairs=2, min_rated=2) == "kto"
    assert choose_stage(data, min_pairs=2, min_rated=3) is None
    only_good = load_preference_data([good, {**good, "id": "g2"}])
    assert choose_stage(only_good, min_pairs=1, min_rated=2) is None  # KTO needs both kinds


async def test_the_collector_keeps_corrections_and_ratings_once_even_when_sft_rejects(
    redis_client, data_dir: Path
) -> None:
    await redis_client.hset(keys.tenant_settings("acme"), "share_training", "1")
    samples = [
        LearningSample(tenant="acme", messages=chat(1, "Use sort."), correction="Use sorted()."),
        LearningSample(tenant="acme", messages=chat(2, "No idea."), rating=0.0),
        LearningSample(tenant="acme", messages=chat(3, "Use sorted()."), rating=1.0),
        LearningSample(tenant="acme", messages=chat(4, "Plain answer.")),
        LearningSample(tenant="other", messages=chat(5, "Not shared."), rating=0.0),
    ]
    for s in samples:
        await redis_client.xadd(keys.learning_stream(), s.to_fields())
    store = PreferenceStore(data_dir / "datasets")
    collector = Collector(
        redis_client,
        Dataset(data_dir / "datasets"),
        SampleFilter(),
        consumer="c",
        preferences=store,
    )
    stats = await collector.drain()
    assert stats.accepted == 3 and stats.rejected == {"negative_rating": 1, "not_shared": 1}
    labels = sorted(r["label"] for r in store.records())
    assert labels == ["bad", "good", "pair"]  # the other tenant's rating is not kept
    # a message read again (a crash before its ack) adds nothing
    collector._keep_preference(samples[0])
    assert len(store.records()) == 3 and len(store.path.read_text().splitlines()) == 3
