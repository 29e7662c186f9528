"""``hivemind learn import``: every format normalised to OpenAI-shaped chats, malformed records
counted and skipped, the captured samples' filter, scrubber and dedup applied, provenance kept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hivemind_cli.main import app
from hivemind_common import keys
from hivemind_trainer.data.dataset import Dataset
from hivemind_trainer.data.importer import Importer, NotNormalisable, normalise_record
from hivemind_trainer.data.sample_filter import SampleFilter

SECRET = "sk-" + "a" * 30


def write_jsonl(path: Path, records: list[Any]) -> Path:
    with path.open("w") as fh:
        for rec in records:
            fh.write((rec if isinstance(rec, str) else json.dumps(rec)) + "\n")
    return path


ALPACA = [
    {
        "instruction": "Write a function that adds two numbers.",
        "input": "",
        "output": "def add(a, b):\n    return a + b",
    },
    {"instruction": "Reverse this list.", "input": "[1, 2, 3]", "output": "[3, 2, 1]"},
    {"instruction": "Give the API key back.", "input": "", "output": f"Your key is {SECRET} now."},
    {"instruction": "No output here", "input": ""},  # malformed: unknown format under auto
    {"instruction": "Output of the wrong type", "output": 42},  # malformed
]

SHAREGPT = [
    {
        "conversations": [
            {"from": "system", "value": "You are terse."},
            {"from": "human", "value": "What is the capital of France?"},
            {"from": "gpt", "value": "Paris is the capital of France."},
        ]
    },
    {
        "conversations": [
            {"from": "human", "value": "Weather in Oslo?"},
            {
                "from": "function_call",
                "value": '{"name": "get_weather", "arguments": {"city": "Oslo"}}',
            },
            {"from": "observation", "value": '{"temp_c": 3}'},
            {"from": "gpt", "value": "It is 3 degrees in Oslo."},
        ]
    },
    {"conversations": [{"from": "martian", "value": "hello"}]},  # unknown speaker
    {"conversations": [{"from": "human", "value": "Only a question?"}]},  # no reply
]

OPENAI = [
    {
        "messages": [
            {"role": "user", "content": "List the files in the current folder please."},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "ls", "arguments": '{"path": "."}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "a.txt b.txt"},
            {
                "role": "assistant",
                "content": [{"type": "text", "text": "There are a.txt and b.txt."}],
            },
        ]
    },
    {"messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "beep"}]},
    {
        "messages": [
            {"role": "user", "content": "Broken call arguments?"},
            {
                "role": "assistant",
                "tool_calls": [{"function": {"name": "f", "arguments": "{not json"}}],
            },
        ]
    },
]

GLAIVE_SYSTEM = (
    "SYSTEM: You are a helpful assistant with access to the following functions. "
    'Use them if required -\n{"name": "convert_currency", "parameters": {"type": "object"}}'
)
GLAIVE_CHAT = (
    "USER: Convert 100 USD to EUR, please.\n\n\n"
    'ASSISTANT: <functioncall> {"name": "convert_currency", "arguments": '
    '\'{"amount": 100, "from": "USD", "to": "EUR"}\'} <|endoftext|>\n\n\n'
    'FUNCTION RESPONSE: {"converted_amount": 92.5}\n\n\n'
    "ASSISTANT: 100 USD is about 92.50 EUR. <|endoftext|>\n\n\n"
)
GLAIVE = [
    {"system": GLAIVE_SYSTEM, "chat": GLAIVE_CHAT},
    {
        "system": "SYSTEM: You are a helpful assistant.",
        "chat": "USER: Tell me a fact about octopuses.\n\n\n"
        "ASSISTANT: An octopus has three hearts. <|endoftext|>\n\n\n",
    },
    {"system": "SYSTEM: x", "chat": "no markers at all"},
    {
        "system": "SYSTEM: x",
        "chat": "USER: call it\n\n\nASSISTANT: <functioncall> {broken <|endoftext|>",
    },
]


def test_each_format_normalises_to_openai_shaped_chats() -> None:
    alpaca = normalise_record(ALPACA[1], "alpaca")
    assert alpaca == [
        {"role": "user", "content": "Reverse this list.\n\n[1, 2, 3]"},
        {"role": "assistant", "content": "[3, 2, 1]"},
    ]
    tool_chat = normalise_record(SHAREGPT[1])
    assert tool_chat[1] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "call_0",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
            }
        ],
    }
    assert tool_chat[2] == {"role": "tool", "content": '{"temp_c": 3}', "tool_call_id": "call_0"}
    openai = normalise_record(OPENAI[0], "openai")
    assert openai[1]["tool_calls"][0]["id"] == "c1" and openai[1]["content"] == ""
    assert openai[3] == {"role": "assistant", "content": "There are a.txt and b.txt."}
    glaive = normalise_record(GLAIVE[0], "glaive")
    assert [m["role"] for m in glaive] == ["system", "user", "assistant", "tool", "assistant"]
    assert glaive[0]["content"].startswith("You are a helpful assistant with access")
    call = glaive[2]["tool_calls"][0]["function"]
    assert call["name"] == "convert_currency"
    assert json.loads(call["arguments"]) == {"amount": 100, "from": "USD", "to": "EUR"}
    assert glaive[4]["content"] == "100 USD is about 92.50 EUR."


@pytest.mark.parametrize(
    ("record", "fmt", "reason"),
    [
        (ALPACA[3], "auto", "unknown_format"),
        (ALPACA[3], "alpaca", "malformed"),
        (ALPACA[4], "auto", "malformed"),
        (SHAREGPT[2], "sharegpt", "malformed"),
        (SHAREGPT[3], "sharegpt", "no_assistant_reply"),
        (OPENAI[1], "openai", "malformed"),
        (OPENAI[2], "openai", "malformed"),
        (GLAIVE[2], "glaive", "malformed"),
        (GLAIVE[3], "glaive", "malformed"),
        ([1, 2], "auto", "unreadable"),
        (SHAREGPT[0], "alpaca", "malformed"),  # a forced format the record does not have
    ],
)
def test_records_that_cannot_be_normalised_say_why(record: Any, fmt: str, reason: str) -> None:
    with pytest.raises(NotNormalisable) as caught:
        normalise_record(record, fmt)
    assert caught.value.reason == reason


async def test_import_stores_only_normalised_filtered_unique_records_with_provenance(
    redis_client, data_dir: Path, tmp_path: Path
) -> None:
    files = {
        "alpaca": write_jsonl(tmp_path / "code_alpaca.jsonl", [*ALPACA, "{torn line"]),
        "sharegpt": write_jsonl(tmp_path / "share.jsonl", SHAREGPT),
        "openai": write_jsonl(tmp_path / "oai.jsonl", OPENAI),
    }
    glaive = tmp_path / "glaive.json"  # one JSON array, as Glaive ships it
    glaive.write_text(json.dumps(GLAIVE))
    dataset = Dataset(data_dir / "datasets")
    importer = Importer(redis_client, dataset, SampleFilter())
    stats = None
    for fmt, path in files.items():
        stats = await importer.import_file(path, fmt, stats=stats)
    stats = await importer.import_file(glaive, "auto", stats=stats)
    assert stats.read == 5 + 1 + 4 + 3 + 4
    assert stats.outcomes == {
        "accepted": 3 + 2 + 1 + 2,
        "malformed": 2 + 1 + 2 + 2,
        "unreadable": 1,
        "no_assistant_reply": 1,
    }
    again = await importer.import_file(files["alpaca"], "auto")  # the same file twice
    assert again.outcomes["accepted"] == 0 and again.outcomes["duplicate"] == 3
    records = list(dataset.records())
    assert len(records) == 8
    by_source: dict[str, list[int]] = {}
    for rec in records:
        by_source.setdefault(rec["source"], []).append(rec["line"])
        assert rec["tenant"] == ""
    assert by_source == {
        "import:code_alpaca.jsonl": [1, 2, 3],
        "import:share.jsonl": [1, 2],
        "import:oai.jsonl": [1],
        "import:glaive.json": [1, 2],
    }
    secret_reply = next(r for r in records if "Your key is" in r["messages"][-1]["content"])
    assert SECRET not in json.dumps(secret_reply) and secret_reply["secrets_scrubbed"] == 1
    state = await redis_client.hgetall(keys.learning_state())
    assert int(state["accepted_total"]) == 8 and int(state["imported_total"]) == 8
    tool_chat = next(r for r in records if r["source"] == "import:oai.jsonl")
    assert tool_chat["messages"][1]["tool_calls"][0]["function"]["name"] == "ls"


def test_learn_import_cli_counts_outcomes_and_reads_parquet(
    redis_url: str, data_dir: Path, tmp_path: Path
) -> None:
    import pyarrow as pa  # installed with the trainer (trl -> datasets): never a skip
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([r for r in ALPACA if isinstance(r.get("output"), str)])
    pq.write_table(table, tmp_path / "alpaca.parquet")
    jsonl = write_jsonl(tmp_path / "chats.jsonl", [SHAREGPT[0], SHAREGPT[2], "not json"])
    env = {"HIVEMIND_REDIS_URL": redis_url, "HIVEMIND_DATA_DIR": str(data_dir)}
    runner = CliRunner()
    done = runner.invoke(
        app, ["learn", "import", str(tmp_path / "alpaca.parquet"), str(jsonl), "--json"], env=env
    )
    assert done.exit_code == 0, done.output
    counts = json.loads(done.output.strip().splitlines()[-1])
    assert counts["read"] == 3 + 3 and counts["accepted"] == 3 + 1
    assert counts["outcomes"] == {"accepted": 4, "malformed": 1, "unreadable": 1}
    assert counts["records_per_s"] > 0
    human = runner.invoke(app, ["learn", "import", str(jsonl)], env=env)
    assert human.exit_code == 0 and "duplicate" in human.output
    bad = runner.invoke(app, ["learn", "import", str(jsonl), "--format", "csv"], env=env)
    assert bad.exit_code == 2 and "--format is one of" in bad.output
    missing = runner.invoke(app, ["learn", "import", str(tmp_path / "nope.jsonl")], env=env)
    assert missing.exit_code == 2


def test_odd_files_lines_and_settings_are_messages_not_tracebacks(
    redis_url: str, data_dir: Path, tmp_path: Path
) -> None:
    """A line nested past the parser (RecursionError), a broken Parquet file (ArrowInvalid),
    an unknown --mode and a zero checkpoint interval each ended in a traceback."""
    jsonl = tmp_path / "odd.jsonl"
    jsonl.write_text("[" * 100_000 + "\n" + json.dumps(SHAREGPT[0]) + "\n")
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 this is not parquet")
    env = {"HIVEMIND_REDIS_URL": redis_url, "HIVEMIND_DATA_DIR": str(data_dir)}
    runner = CliRunner()
    done = runner.invoke(app, ["learn", "import", str(broken), str(jsonl), "--json"], env=env)
    assert done.exit_code == 0, done.output
    counts = json.loads(done.output.strip().splitlines()[-1])
    assert counts["outcomes"]["unreadable"] == 2 and counts["accepted"] == 1
    mode = runner.invoke(app, ["learn", "train-now", "--mode", "xyz"], env=env)
    assert mode.exit_code == 2 and "mode" in mode.output and "Traceback" not in mode.output
    zero = runner.invoke(
        app, ["learn", "import", str(jsonl)], env={**env, "HIVEMIND_CHECKPOINT_EVERY": "0"}
    )
    assert zero.exit_code == 2 and "checkpoint_every" in zero.output
