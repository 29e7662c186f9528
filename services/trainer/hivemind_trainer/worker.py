"""The trainer's background work: lead, collect samples, take train jobs, start cycles.

Every trainer runs :meth:`TrainerWorker.run`; only the one holding the leader lock collects and
trains. Jobs come from ``keys.jobs_stream()`` (consumer group ``keys.TRAINER_GROUP``): a job
left unacknowledged by a killed worker is claimed after ``reclaim_idle_ms``. A reclaimed job whose
record shows it already reached export (or finished) is acknowledged and not run again, so a
crash never causes a second deploy; one that died mid-training runs again from its checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket

from pydantic import ValidationError
from redis.exceptions import RedisError, ResponseError

from hivemind_common import keys
from hivemind_common.dead_letters import bury, count_start, keep_claimed, poison_reason
from hivemind_common.errors import HivemindError, NotFound
from hivemind_common.job_records import get_job
from hivemind_common.jobs import TrainJob
from hivemind_common.redis import HivemindRedis
from hivemind_trainer.cycle import CycleResult, make_collector, run_cycle
from hivemind_trainer.idle import check_idle
from hivemind_trainer.metrics import (
    IS_LEADER,
    LEARNING_STREAM_LENGTH,
    LEARNING_STREAM_PENDING,
    NEW_SAMPLES,
)
from hivemind_trainer.orchestrator import LeaderLock, LeadershipLost, state_decision
from hivemind_trainer.settings import TrainerSettings

log = logging.getLogger(__name__)

_PAST_TRAINING = frozenset({"export", "deploy", "done"})


class TrainerWorker:
    """Leader election, sample collection, job handling and the threshold rule, in one loop."""

    def __init__(self, redis: HivemindRedis, settings: TrainerSettings) -> None:
        self.redis = redis
        self.settings = settings
        self.consumer = settings.consumer_name or f"{socket.gethostname()}-{os.getpid()}"
        self.lock = LeaderLock(redis, self.consumer)
        self.collector = make_collector(redis, settings, self.consumer)
        self.last_result: CycleResult | None = None

    async def ensure_groups(self) -> None:
        for stream in (keys.jobs_stream(), keys.learning_stream()):
            try:
                await self.redis.xgroup_create(stream, keys.TRAINER_GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def publish_config(self) -> None:
        """Let status readers (gateway, CLI) see the rule this trainer applies."""
        s = self.settings
        await self.redis.hset(
            keys.learning_state(),
            mapping={
                "threshold": s.threshold,
                "min_interval_s": s.min_interval_s,
                "mode": s.mode,
                "model": s.model_name,
            },
        )

    async def next_job(self) -> tuple[str, TrainJob | None] | None:
        """A stale job claimed from a dead worker, else our own pending one, else a new one."""
        stream = keys.jobs_stream()
        claimed = await self.redis.xautoclaim(
            stream,
            keys.TRAINER_GROUP,
            self.consumer,
            min_idle_time=self.settings.reclaim_idle_ms,
            start_id="0-0",
            count=1,
        )
        messages = list(claimed[1])
        if not messages:
            for start in ("0", ">"):
                resp = await self.redis.xreadgroup(
                    keys.TRAINER_GROUP, self.consumer, {stream: start}, count=1
                )
                messages = [m for _s, batch in resp or [] for m in batch]
                if messages:
                    break
        if not messages:
            return None
        msg_id, fields = messages[0]
        try:
            return msg_id, TrainJob.from_fields(fields) if fields else None
        except (ValidationError, ValueError):
            log.warning("train job %s is not a valid payload; dropped", msg_id)
            return msg_id, None

    async def handle_job(self, msg_id: str, job: TrainJob | None) -> CycleResult | None:
        """Run a job unless it already got past training; acknowledge it unless leadership
        was lost (then the new leader takes it over). The entry is kept claimed meanwhile."""
        result = None
        heartbeat = asyncio.create_task(self._keep_claimed(msg_id))
        ack = True
        try:
            if job is not None:
                try:
                    record = await get_job(self.redis, job.job_id)
                    done = record.finished or record.stage in _PAST_TRAINING
                except NotFound:
                    done = False
                if done:
                    log.info("train job %s already past training; not run again", job.job_id)
                elif await self._poisoned(msg_id, job):
                    pass  # failed, listed as a dead letter and acknowledged
                else:
                    settings = self.settings.model_copy(update={"model_name": job.model})
                    result = await run_cycle(
                        self.redis,
                        settings,
                        job.job_id,
                        overrides=job.overrides,
                        requested_by=job.requested_by,
                        reason=job.reason,
                        consumer=self.consumer,
                        lease=self.lock,
                    )
                    self.last_result = result
        except (LeadershipLost, asyncio.CancelledError):
            # another leader takes it over, or this trainer is stopping (SIGTERM mid-cycle):
            # the entry stays pending and is reclaimed, never acknowledged with its record
            # left "running"
            ack = False
            raise
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await heartbeat  # a missed heartbeat only risks a reclaim, never fatal
            if ack:
                await self.redis.xack(keys.jobs_stream(), keys.TRAINER_GROUP, msg_id)
        return result

    async def _poisoned(self, msg_id: str, job: TrainJob) -> bool:
        """Count this start; past ``max_attempts`` bury the job instead of running it again."""
        attempts = await count_start(self.redis, job.job_id, "train")
        if attempts <= self.settings.max_attempts:
            return False
        stage = None
        with contextlib.suppress(NotFound):
            stage = (await get_job(self.redis, job.job_id)).stage
        letter = await bury(
            self.redis,
            job_id=job.job_id,
            kind="train",
            attempts=attempts - 1,
            reason=poison_reason("train", attempts - 1, stage),
            stream=keys.jobs_stream(),
            group=keys.TRAINER_GROUP,
            entry_id=msg_id,
        )
        log.error("train job %s moved to the dead-letter list: %s", job.job_id, letter["reason"])
        return True

    async def _keep_claimed(self, msg_id: str) -> None:
        """Reset the entry's idle time while the job runs, so no other trainer reclaims it.

        XCLAIM with JUSTID does not count as a delivery.
        """
        await keep_claimed(
            self.redis, keys.jobs_stream(), keys.TRAINER_GROUP, self.consumer, msg_id,
            interval_s=max(self.settings.reclaim_idle_ms / 3000, 0.5),
        )  # fmt: skip

    async def observe_backlog(self) -> None:
        """Set the backlog gauges: stream length, unacknowledged entries, untrained samples."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xlen(keys.learning_stream())
            pipe.xpending(keys.learning_stream(), keys.TRAINER_GROUP)
            pipe.hmget(keys.learning_state(), ["accepted_seq", "trained_seq"])
            length, pending, (accepted, trained) = await pipe.execute()
        LEARNING_STREAM_LENGTH.set(int(length))
        LEARNING_STREAM_PENDING.set(int(pending.get("pending", 0) if pending else 0))
        NEW_SAMPLES.set(max(0, int(float(accepted or 0)) - int(float(trained or 0))))

    async def step(self) -> CycleResult | None:
        """One pass as leader: collect, then a queued job or the threshold rule."""
        await self.collector.collect_once(block_ms=None)
        await self.observe_backlog()
        nxt = await self.next_job()
        if nxt is not None:
            return await self.handle_job(*nxt)
        decision = await state_decision(self.redis, self.settings)
        if decision.train:
            verdict = await asyncio.to_thread(check_idle, self.settings)
            await self.redis.hset(
                keys.learning_state(),
                mapping={"idle_wait": "" if verdict.idle else verdict.reason},
            )
            if not verdict.idle:
                log.info("learning cycle waits: %s", verdict.reason)
                return None
            log.info("starting a learning cycle: %s (%s)", decision.reason, verdict.reason)
            job = TrainJob(model=self.settings.model_name, reason="threshold")
            await self.redis.xadd(
                keys.jobs_stream(),
                job.to_fields(),
                maxlen=keys.JOBS_STREAM_MAXLEN,
                approximate=True,
            )
            nxt = await self.next_job()
            if nxt is not None:
                return await self.handle_job(*nxt)
        return None

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop``: try to lead; while leading, step every ``check_interval_s``."""
        await self.ensure_groups()
        await self.publish_config()
        renewer = asyncio.create_task(self.lock.keep_renewed())
        try:
            while not stop.is_set():
                try:
                    if await self.lock.acquire():
                        IS_LEADER.set(1)
                        result = await self.step()
                        if result is not None:
                            continue  # look for more queued work at once
                    else:
                        IS_LEADER.set(0)
                except (RedisError, OSError, HivemindError) as exc:
                    log.warning("trainer worker pass failed: %s", exc)
                with contextlib.suppress(TimeoutError):  # asyncio.timeout passes a cancel on
                    async with asyncio.timeout(self.settings.check_interval_s):
                        await stop.wait()
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            await self.lock.release()
            IS_LEADER.set(0)
