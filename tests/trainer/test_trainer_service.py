"""The trainer service: its worker leads, collects samples from the stream, and reports metrics."""

from __future__ import annotations

from pathlib import Path

import httpx
import redis as sync_redis

from hivemind_common import keys
from hivemind_common.jobs import LearningSample
from hivemind_trainer.app import create_app
from hivemind_trainer.settings import TrainerSettings
from support.servers import serve_app
from support.waiting import wait_until


def test_the_running_service_leads_collects_and_exposes_metrics(
    redis_url: str, data_dir: Path, internal_token: str
) -> None:
    settings = TrainerSettings(
        redis_url=redis_url,
        data_dir=data_dir,
        internal_token=internal_token,
        threshold=1_000,  # collect only: no cycle starts
        check_interval_s=0.05,
        consumer_name="svc",
    )
    r = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    chat = [
        {"role": "user", "content": "What does git stash do?"},
        {"role": "assistant", "content": "It shelves uncommitted changes so you can reapply them."},
    ]
    r.hset(keys.tenant_settings("acme"), "share_training", "1")  # acme opted in
    r.xadd(keys.learning_stream(), LearningSample(tenant="acme", messages=chat).to_fields())
    with serve_app(create_app(settings)) as url:
        wait_until(lambda: r.get(keys.leader_lock("trainer")) == "svc", what="leadership")
        wait_until(
            lambda: r.hget(keys.learning_state(), "accepted_total") == "1", what="collection"
        )
        assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200
        metrics = httpx.get(f"{url}/metrics", timeout=5).text
        assert 'hivemind_trainer_samples_total{outcome="accepted"}' in metrics
        assert "hivemind_trainer_is_leader 1.0" in metrics
    # a clean stop gives the lease back at once
    assert r.get(keys.leader_lock("trainer")) is None
    r.close()
