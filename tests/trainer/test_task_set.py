"""The trainer's eval set for the served-files gate: held-out items, a user's file, general."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hivemind_common.errors import Unprocessable
from hivemind_trainer.eval.task_set import task_items, write_eval_set


def rec(i: int) -> dict:
    return {
        "id": f"s{i}",
        "messages": [
            {"role": "user", "content": f"question {i}"},
            {"role": "assistant", "content": f"answer {i}"},
        ],
    }


GENERAL = [
    [{"role": "user", "content": f"general {i}"}, {"role": "assistant", "content": f"g{i}"}]
    for i in range(20)
]


def test_items_from_heldout_a_user_file_and_the_general_set(tmp_path: Path) -> None:
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text(
        json.dumps({"prompt": "Greet me", "reference": "Ahoy!", "check": {"startswith": "ahoy"}})
        + "\n"
        + json.dumps({"instruction": "Count to 3", "output": "1 2 3"})
        + "\n"
    )
    tool_ending = {
        "id": "t",
        "messages": [
            {"role": "user", "content": "ls"},
            {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "ls"}}]},
        ],
    }
    items = task_items(
        [rec(i) for i in range(30)] + [tool_ending],
        general=GENERAL,
        eval_file=eval_file,
        max_items=5,
        general_items=3,
    )
    kinds = [it["kind"] for it in items]
    assert kinds == ["heldout"] * 5 + ["file"] * 2 + ["general"] * 3
    assert items[5] == {
        "id": "file:eval.jsonl:1",
        "kind": "file",
        "messages": [{"role": "user", "content": "Greet me"}],
        "reference": "Ahoy!",
        "check": {"startswith": "ahoy"},
    }
    again = task_items([rec(i) for i in range(30)], general=GENERAL, max_items=5)
    assert [it["id"] for it in again[:5]] == [it["id"] for it in items[:5]]  # stable choice
    summary = write_eval_set(
        tmp_path / "v1",
        items,
        heldout_chats=[r["messages"] for r in (rec(i) for i in range(30))],
        general_chats=GENERAL,
        general_set="abc",
        max_loss_chats=8,
    )
    assert summary["items"] == {"heldout": 5, "file": 2, "general": 3}
    assert summary["loss_chats"] == {"heldout": 8, "general": 8}
    stored = (tmp_path / "v1" / "eval" / "task.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in stored] == items


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "unreadable"),
        (json.dumps({"messages": [{"role": "user", "content": "hi"}]}), "no_assistant_reply"),
        (json.dumps({"prompt": "a", "reference": "b", "check": {"rhymes": "x"}}), "check takes"),
    ],
)
def test_a_broken_eval_file_is_refused_with_the_record_named(
    tmp_path: Path, line: str, message: str
) -> None:
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text(json.dumps({"prompt": "ok", "reference": "fine"}) + "\n" + line + "\n")
    with pytest.raises(Unprocessable, match=f"record 2: .*{message}|record 2.*{message}"):
        task_items([], general=[], eval_file=eval_file)


def test_learn_status_shows_each_versions_task_eval_and_preference_figures(
    redis_url: str, data_dir: Path
) -> None:
    import asyncio

    from typer.testing import CliRunner

    from hivemind_cli.main import app
    from hivemind_common.model_registry import ModelRegistry, ModelVersion
    from hivemind_common.redis import connect_redis

    async def register() -> None:
        redis = connect_redis(redis_url)
        try:
            await ModelRegistry(redis, data_dir).register(
                ModelVersion(
                    name="default",
                    version="v1",
                    metrics={
                        "task_f1": 0.61,
                        "served_task_f1": 0.42,
                        "preference_accuracy": 0.9,
                        "llama_general_loss": 2.5,
                    },
                )
            )
        finally:
            await redis.aclose()

    asyncio.run(register())
    env = {"HIVEMIND_REDIS_URL": redis_url, "HIVEMIND_DATA_DIR": str(data_dir)}
    runner = CliRunner()
    shown = runner.invoke(app, ["learn", "status", "--json"], env=env)
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["versions"] == [
        {
            "version": "v1",
            "status": "ready",
            "task_f1": 0.61,
            "served_task_f1": 0.42,
            "llama_general_loss": 2.5,
            "preference_accuracy": 0.9,
        }
    ]
    human = runner.invoke(app, ["learn", "status"], env=env, terminal_width=200)
    assert human.exit_code == 0 and "0.610" in human.output and "0.420" in human.output
