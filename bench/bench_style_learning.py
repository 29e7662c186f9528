"""Learning that measurably helps (issue 18): a style taught by 100 captured chats, on SmolLM2.

The run is :func:`support.style_learning.learn_style` (the end-to-end test
``tests/e2e/test_learning_loop.py`` runs the same, through the gateway and with a hot swap):
100 captain-style chats captured → a cycle trains, gates and exports a version → on 20 prompts
it never saw, the style rate of the deployed files and of the base, in llama.cpp, with the task
eval's scores from the manifest.

In one process, a real redis-server, CPU only. Writes ``style_learning.json``. ``MODE`` (fast)
and ``SAMPLES`` (100) from env.
"""

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


def main(out_dir: Path) -> dict[str, Any]:
    from support.redis_servers import standalone_redis
    from support.style_learning import learn_style

    out_dir.mkdir(parents=True, exist_ok=True)
    mode = os.environ.get("MODE", "fast")
    samples = int(os.environ.get("SAMPLES", "100"))
    with (
        tempfile.TemporaryDirectory(prefix="bench-style-") as tmp,
        standalone_redis(Path(tmp) / "redis") as server,
    ):
        return asyncio.run(
            learn_style(server.url, Path(tmp) / "var", out_dir, mode=mode, samples=samples)
        )


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1] if len(sys.argv) > 1 else "var/bench")), indent=2))
