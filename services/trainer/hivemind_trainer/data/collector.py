"""Read the learning stream in the trainer's consumer group, filter, and store accepted samples.

Each message is acknowledged only after its outcome is recorded (accepted sample fsynced to the
dataset, or rejection counted), so a crashed trainer's pending messages are claimed again by the
next one (``XAUTOCLAIM`` after ``reclaim_idle_ms``). Re-processing is harmless: the dataset reads
a sample id once, and the exact-duplicate set is written after the sample is on disk.

Consent: a sample trains the shared model only when its tenant opted in (``share_training`` in
the tenant's settings, ``hivemind tenants set <t> --share-training``). The others are acknowledged
and counted as ``not_shared`` (the samples metric, the rejection counters and the tenant's own
counts), never stored.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from redis.exceptions import ResponseError

from hivemind_common import keys
from hivemind_common.jobs import LearningSample
from hivemind_trainer.data.dataset import Dataset
from hivemind_trainer.data.sample_filter import Accepted, SampleFilter, chat_text
from hivemind_trainer.metrics import SAMPLES
from hivemind_trainer.preference.data import PreferenceStore, preference_record

log = logging.getLogger(__name__)

NOT_SHARED = "not_shared"  # the tenant did not opt in to training the shared model


@dataclass
class CollectStats:
    """What one pass over the stream did."""

    read: int = 0
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)

    def merge(self, other: CollectStats) -> None:
        self.read += other.read
        self.accepted += other.accepted
        self.rejected.update(other.rejected)

    def as_dict(self) -> dict[str, Any]:
        return {"read": self.read, "accepted": self.accepted, "rejected": dict(self.rejected)}


class Collector:
    """One consumer of ``keys.learning_stream()`` in group ``keys.TRAINER_GROUP``."""

    def __init__(
        self,
        redis: Any,
        dataset: Dataset,
        sample_filter: SampleFilter,
        *,
        consumer: str,
        reclaim_idle_ms: int = 60_000,
        preferences: PreferenceStore | None = None,
    ) -> None:
        self.redis = redis
        self.dataset = dataset
        self.filter = sample_filter
        self.consumer = consumer
        self.reclaim_idle_ms = reclaim_idle_ms
        self._loaded = False
        self._consent: dict[str, bool] = {}  # per pass: a tenant's switch is read once a pass
        self.preferences: PreferenceStore | None = preferences
        self._pref_ids: set[str] | None = None

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(
                keys.learning_stream(), keys.TRAINER_GROUP, id="0", mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def load(self) -> None:
        """Rebuild the near-duplicate index from the dataset (once)."""
        if not self._loaded:
            for rec in self.dataset.records():
                self.filter.near_dups.add(chat_text(rec["messages"]))
            self._loaded = True

    async def collect_once(self, *, count: int = 200, block_ms: int | None = None) -> CollectStats:
        """Reclaim stale pending messages, then read new ones; process and acknowledge each."""
        await self.ensure_group()
        self.load()
        self._consent.clear()
        stats = CollectStats()
        claimed = await self.redis.xautoclaim(
            keys.learning_stream(),
            keys.TRAINER_GROUP,
            self.consumer,
            min_idle_time=self.reclaim_idle_ms,
            start_id="0-0",
            count=count,
        )
        for msg_id, fields in claimed[1]:
            if fields:
                await self._process(msg_id, fields, stats)
            else:  # trimmed away while pending
                await self.redis.xack(keys.learning_stream(), keys.TRAINER_GROUP, msg_id)
        # our own pending messages first (a restart under the same name), then new ones
        for start in ("0", ">"):
            resp = await self.redis.xreadgroup(
                keys.TRAINER_GROUP,
                self.consumer,
                {keys.learning_stream(): start},
                count=count,
                block=block_ms if start == ">" else None,
            )
            for _stream, messages in resp or []:
                for msg_id, fields in messages:
                    await self._process(msg_id, fields, stats)
        return stats

    async def drain(self, *, batch: int = 500) -> CollectStats:
        """Collect until the stream has nothing new for us."""
        total = CollectStats()
        while True:
            stats = await self.collect_once(count=batch)
            total.merge(stats)
            if stats.read == 0:
                return total

    async def shares_training(self, tenant: str) -> bool:
        """Whether ``tenant`` opted in to training the shared model (read once a pass)."""
        if tenant not in self._consent:
            raw = await self.redis.hget(keys.tenant_settings(tenant), "share_training")
            self._consent[tenant] = raw == "1"
        return self._consent[tenant]

    async def _count_for_tenant(
        self, tenant: str | None, outcome: str, source: str | None = None
    ) -> None:
        if source is not None:  # the suite's samples by source and outcome
            suite = keys.learning_sources()
            field = await self._source_field(suite, f"{source}:{outcome}", f"other:{outcome}")
            await self.redis.hincrby(suite, field, 1)
        if tenant is not None:  # the tenant's own view of what happened to its samples
            counts = keys.tenant_learning_counts(tenant)
            await self.redis.hincrby(counts, outcome, 1)
            if source is not None:
                field = await self._source_field(
                    counts, f"source:{source}:{outcome}", f"source:other:{outcome}"
                )
                await self.redis.hincrby(counts, field, 1)

    async def _source_field(self, counter: str, field: str, other: str) -> str:
        """``field`` while the counter has room for it (or already has it), else ``other``."""
        if await self.redis.hexists(counter, field):
            return field
        if int(await self.redis.hlen(counter)) < keys.LEARNING_SOURCES_MAX:
            return field
        return other

    async def _reject(
        self,
        msg_id: str,
        reason: str,
        stats: CollectStats,
        tenant: str | None = None,
        source: str | None = None,
    ) -> None:
        stats.rejected[reason] += 1
        SAMPLES.labels(outcome=reason).inc()
        await self.redis.transaction(
            ("HINCRBY", keys.learning_rejections(), reason, 1),
            ("HINCRBY", keys.learning_state(), "rejected_total", 1),
        )
        outcome = "not_shared" if reason == NOT_SHARED else "rejected"
        await self._count_for_tenant(tenant, outcome, source)
        await self.redis.xack(keys.learning_stream(), keys.TRAINER_GROUP, msg_id)

    def _keep_preference(self, sample: LearningSample) -> None:
        """Store what a correction or a rating says about an answer (the preference stage's
        data); stored once per sample id, so a re-read message adds nothing."""
        if self.preferences is None:
            return
        rec = preference_record(
            sample,
            min_rating=self.filter.min_rating,
            heldout_fraction=self.dataset.heldout_fraction,
        )
        ids = self._preference_ids()
        if rec is not None and rec["id"] not in ids:
            self.preferences.append(rec)
            ids.add(rec["id"])

    def _preference_ids(self) -> set[str]:
        if self._pref_ids is None:
            assert self.preferences is not None
            self._pref_ids = {r["id"] for r in self.preferences.records()}
        return self._pref_ids

    async def _process(self, msg_id: str, fields: dict[str, Any], stats: CollectStats) -> None:
        stats.read += 1
        try:
            sample = LearningSample.from_fields(fields)
        except (ValidationError, json.JSONDecodeError, TypeError):
            log.warning("learning sample %s is not a valid payload; rejected", msg_id)
            await self._reject(msg_id, "malformed", stats)
            return
        if sample.schema_version != 1:
            await self._reject(msg_id, "unsupported_schema", stats)
            return
        if not keys.valid_tenant(sample.tenant):
            await self._reject(msg_id, "malformed", stats)
            return
        tenant = sample.tenant
        if not await self.shares_training(tenant):
            await self._reject(msg_id, NOT_SHARED, stats, tenant, sample.source)
            return
        outcome = self.filter.check(sample)
        self._keep_preference(sample)  # a correction or a rating, whatever the SFT filter says
        if not isinstance(outcome, Accepted):
            await self._reject(msg_id, outcome.reason, stats, tenant, sample.source)
            return
        if await self.redis.sismember(keys.learning_seen(), outcome.content_hash):
            await self._reject(msg_id, "duplicate", stats, tenant, sample.source)
            return
        if self.filter.near_duplicate(outcome):
            await self._reject(msg_id, "near_duplicate", stats, tenant, sample.source)
            return
        seq = int(await self.redis.hincrby(keys.learning_state(), "accepted_seq", 1))
        self.dataset.append(outcome, seq=seq)
        self.filter.remember(outcome)
        await self.redis.transaction(
            ("SADD", keys.learning_seen(), outcome.content_hash),
            ("HINCRBY", keys.learning_state(), "accepted_total", 1),
            ("HINCRBY", keys.learning_state(), "secrets_scrubbed", outcome.secrets_scrubbed),
        )
        await self._count_for_tenant(tenant, "accepted", sample.source)
        await self.redis.xack(keys.learning_stream(), keys.TRAINER_GROUP, msg_id)
        stats.accepted += 1
        SAMPLES.labels(outcome="accepted").inc()
