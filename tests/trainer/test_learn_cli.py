"""``hivemind learn status|collect`` against a real Redis."""

from __future__ import annotations

import json
from pathlib import Path

import redis as sync_redis
from typer.testing import CliRunner

from hivemind_cli.main import app
from hivemind_common import keys
from hivemind_common.jobs import LearningSample


def test_collect_then_status_show_accepted_and_rejected_samples(
    redis_url: str, data_dir: Path
) -> None:
    r = sync_redis.Redis.from_url(redis_url, decode_responses=True)
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
