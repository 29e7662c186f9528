"""Import throughput (records/s) of ``hivemind learn import``'s engine on generated public-format
data: N Code-Alpaca-shaped and N Glaive-function-calling-shaped records (10% malformed), through
normalisation, the sample filter and scrubber, exact (Redis) and near (MinHash) dedup, into the
dataset. A real redis-server; ``RECORDS`` (env) sets N (default 5000 of each)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))

WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "list",
    "file",
    "sort",
    "merge",
    "parse",
    "token",
    "value",
    "index",
    "array",
    "map",
]


def _phrase(i: int, n: int) -> str:
    return " ".join(WORDS[(i * 7 + k * 3 + (i >> k)) % len(WORDS)] for k in range(n)) + f" {i}"


def write_files(directory: Path, n: int) -> list[tuple[Path, str]]:
    alpaca = directory / "code_alpaca.jsonl"
    glaive = directory / "glaive.jsonl"
    with alpaca.open("w") as fh:
        for i in range(n):
            if i % 10 == 9:
                fh.write(json.dumps({"instruction": _phrase(i, 6)}) + "\n")
                continue
            rec = {
                "instruction": f"Write a function number {i} that {_phrase(i, 8)}",
                "input": "",
                "output": f"def f_{i}(x):\n    # {_phrase(i * 3, 12)}\n    return x * {i}",
            }
            fh.write(json.dumps(rec) + "\n")
    with glaive.open("w") as fh:
        for i in range(n):
            args = json.dumps({"query": _phrase(i, 4), "limit": i % 50})
            chat = (
                f"USER: Please look up {_phrase(i, 6)}\n\n\nASSISTANT: <functioncall> "
                f'{{"name": "search_{i % 20}", "arguments": \'{args}\'}} <|endoftext|>\n\n\n'
                f'FUNCTION RESPONSE: {{"hits": {i % 7}}}\n\n\n'
                f"ASSISTANT: I found {i % 7} results for {_phrase(i * 5, 5)}. <|endoftext|>"
            )
            if i % 10 == 9:
                chat = "ASSISTANT: <functioncall> {broken"
            fh.write(json.dumps({"system": "SYSTEM: You can call search.", "chat": chat}) + "\n")
    return [(alpaca, "alpaca"), (glaive, "glaive")]


async def _run(redis_url: str, data_dir: Path, files: list[tuple[Path, str]]) -> dict[str, Any]:
    from hivemind_common.redis import connect_redis
    from hivemind_trainer.data.dataset import Dataset
    from hivemind_trainer.data.importer import Importer, ImportStats
    from hivemind_trainer.data.sample_filter import SampleFilter

    redis = connect_redis(redis_url)
    try:
        importer = Importer(redis, Dataset(data_dir / "datasets"), SampleFilter())
        stats = ImportStats()
        for path, fmt in files:
            await importer.import_file(path, fmt, stats=stats)
        return stats.as_dict()
    finally:
        await redis.aclose()


def main() -> dict[str, Any]:
    from support.redis_servers import standalone_redis

    n = int(os.environ.get("RECORDS", "5000"))
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        files = write_files(Path(tmp), n)
        with standalone_redis(Path(tmp) / "redis") as server:
            result = asyncio.run(_run(server.url, Path(tmp) / "var", files))
    result["load_avg_1m"] = os.getloadavg()[0]
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
