"""``hivemind learn train-now --foundation``: a run on imported public-format data from the base,
whose adapter the next cycles continue from (they skip the imported samples it trained on)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from trainer_tiny import chats
from typer.testing import CliRunner

from hivemind_cli.main import app
from hivemind_common import keys
from hivemind_common.jobs import LearningSample
from hivemind_common.model_registry import ModelRegistry

pytestmark = pytest.mark.slow


def code_alpaca_slice(path: Path, n: int) -> Path:
    """A small slice in Code Alpaca's public format (one record a line)."""
    with path.open("w") as fh:
        for i in range(n):
            record = {
                "instruction": f"Write a function that adds {i} to a number.",
                "input": "",
                "output": f"def add_{i}(x):\n    return x + {i}",
            }
            fh.write(json.dumps(record) + "\n")
        fh.write('{"instruction": "broken record without an output"}\n')
    return path


def test_a_foundation_run_trains_on_imports_and_later_cycles_continue_from_it(
    redis_url: str, data_dir: Path, tmp_path: Path, trained_tiny_dir: Path
) -> None:
    import asyncio

    import redis as sync_redis

    env = {
        "HIVEMIND_REDIS_URL": redis_url,
        "HIVEMIND_DATA_DIR": str(data_dir),
        "HIVEMIND_BASE_HF_DIR": str(trained_tiny_dir),
        "HIVEMIND_MAX_STEPS": "3",
        "HIVEMIND_GENERAL_TOLERANCE": "1.0",
        "HIVEMIND_HELDOUT_FRACTION": "0.2",
        "HIVEMIND_IDLE_CHECK": "false",
    }
    runner = CliRunner()
    imported = runner.invoke(
        app,
        ["learn", "import", str(code_alpaca_slice(tmp_path / "ca.jsonl", 40)), "--json"],
        env=env,
    )
    assert imported.exit_code == 0, imported.output
    assert json.loads(imported.output.strip().splitlines()[-1])["accepted"] == 40

    r = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    r.hset(keys.tenant_settings("acme"), "share_training", "1")
    for conv in chats(10, offset=500):  # captured chats arrive before the foundation run
        r.xadd(
            keys.learning_stream(),
            LearningSample(tenant="acme", messages=conv, rating=1.0).to_fields(),
        )

    founded = runner.invoke(app, ["learn", "train-now", "--foundation"], env=env)
    assert founded.exit_code == 0, founded.output
    first = json.loads(founded.output[founded.output.index("{") :])
    assert first["status"] in ("exported", "rejected"), first
    registry_dir = data_dir / "models" / "default" / first["version"]
    manifest = json.loads((registry_dir / "manifest.json").read_text())
    assert manifest["foundation"] is True and manifest["parent_version"] is None
    assert set(manifest["dataset"]["sources"]) == {"import:ca.jsonl"}  # imports only
    assert manifest["metrics"]["foundation"] is True
    state = r.hgetall(keys.learning_state())
    assert int(state["foundation_seq"]) >= 40 and int(state.get("trained_seq") or 0) == 0

    async def serve_it() -> None:  # what the exporter's deploy does
        from hivemind_common.redis import connect_redis

        client = connect_redis(redis_url)
        try:
            await ModelRegistry(client, data_dir).mark_serving("default", first["version"])
        finally:
            await client.aclose()

    asyncio.run(serve_it())
    later = runner.invoke(app, ["learn", "train-now"], env=env)
    assert later.exit_code == 0, later.output
    second = json.loads(later.output[later.output.index("{") :])
    manifest = json.loads(
        (data_dir / "models" / "default" / second["version"] / "manifest.json").read_text()
    )
    assert manifest["parent_version"] == first["version"]  # continued from the foundation
    assert manifest["foundation"] is False
    assert set(manifest["dataset"]["sources"]) == {"api"}  # the imports are not trained again
    r.close()
