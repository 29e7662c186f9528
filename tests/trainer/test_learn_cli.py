"""``hivemind learn status|collect`` against a real Redis."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis as sync_redis
from trainer_tiny import chats
from typer.testing import CliRunner

from hivemind_cli.main import app
from hivemind_common import keys
from hivemind_common.jobs import LearningSample


def test_collect_then_status_show_accepted_and_rejected_samples(
    redis_url: str, data_dir: Path
) -> None:
    r = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    r.hset(keys.tenant_settings("acme"), "share_training", "1")  # acme opted in
    good = [
        {"role": "user", "content": "How do I list files?"},
        {"role": "assistant", "content": "Run ls -la in the folder."},
    ]
    r.xadd(keys.learning_stream(), LearningSample(tenant="acme", messages=good).to_fields())
    r.xadd(
        keys.learning_stream(), LearningSample(tenant="acme", messages=good, rating=-1).to_fields()
    )
    r.close()
    env = {"HIVEMIND_REDIS_URL": redis_url, "HIVEMIND_DATA_DIR": str(data_dir)}
    runner = CliRunner()
    collected = runner.invoke(app, ["learn", "collect"], env=env)
    assert collected.exit_code == 0, collected.output
    assert json.loads(collected.output.strip().splitlines()[-1]) == {
        "read": 2,
        "accepted": 1,
        "rejected": {"negative_rating": 1},
    }
    shown = runner.invoke(app, ["learn", "status", "--json"], env=env)
    assert shown.exit_code == 0, shown.output
    status = json.loads(shown.output)
    assert status["samples"]["accepted_total"] == 1
    assert status["samples"]["rejected_by_reason"] == {"negative_rating": 1}
    assert status["samples"]["new_since_last_train"] == 1
    human = runner.invoke(app, ["learn", "status"], env=env)
    assert human.exit_code == 0 and "1 accepted" in human.output


@pytest.mark.slow
def test_train_now_runs_a_cycle_under_the_lease_and_refuses_when_another_leads(
    redis_url: str, data_dir: Path, trained_tiny_dir: Path
) -> None:
    r = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    r.hset(keys.tenant_settings("acme"), "share_training", "1")  # acme opted in
    for conv in chats(12, offset=300):
        sample = LearningSample(tenant="acme", messages=conv, rating=1.0)
        r.xadd(keys.learning_stream(), sample.to_fields())
    env = {
        "HIVEMIND_REDIS_URL": redis_url,
        "HIVEMIND_DATA_DIR": str(data_dir),
        "HIVEMIND_BASE_HF_DIR": str(trained_tiny_dir),
        "HIVEMIND_SEQ_LEN": "512",
        "HIVEMIND_GENERAL_TOLERANCE": "1.0",
    }
    runner = CliRunner()
    r.set(keys.leader_lock("trainer"), "someone-else", px=60_000)
    refused = runner.invoke(app, ["learn", "train-now", "--max-steps", "2"], env=env)
    assert refused.exit_code == 1 and "another trainer" in refused.output
    r.delete(keys.leader_lock("trainer"))
    done = runner.invoke(app, ["learn", "train-now", "--max-steps", "2"], env=env)
    assert done.exit_code == 0, done.output
    result = json.loads(done.output[done.output.index("{") :])
    assert result["status"] in {"exported", "rejected"} and 1 <= result["train"]["steps"] <= 2
    assert r.get(keys.leader_lock("trainer")) is None  # the lease is given back
    r.close()
