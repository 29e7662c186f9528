"""Learning that measurably helps (issue 18), end to end on the shipped SmolLM2.

100 captured chats in a ship's captain's style → one learning cycle trains, gates and exports a
version → the files that would be served (quantized base + adapter, in llama.cpp) answer 20
prompts they never saw in that style far more often than the base, and the manifest carries
the task eval's scores of both sides. Same run as ``bench/bench_style_learning.py``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from support.redis_servers import standalone_redis
from support.style_learning import UNSEEN, learn_style

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1500)]


def test_a_taught_style_is_deployed_and_used_on_prompts_it_never_saw(tmp_path: Path) -> None:
    with standalone_redis(tmp_path / "redis") as server:
        result = asyncio.run(learn_style(server.url, tmp_path / "var", tmp_path / "out"))
    print({k: result[k] for k in ("gate", "style_rate_base", "style_rate_deployed", "train_s")})
    assert result["cycle"] == "exported", result["gate"]
    assert result["export"] == ["exported"], result["export_detail"]
    assert result["serving"] == result["version"]
    # the 20 unseen prompts, answered by the deployed files and by the base in llama.cpp
    assert result["unseen_prompts"] == len(UNSEEN) == 20
    assert result["style_rate_base"] <= 0.1
    assert result["style_rate_deployed"] >= result["style_rate_base"] + 0.5, result["examples"]
    # the task eval's scores of both sides are in the manifest; the candidate is no worse
    candidate, served = result["task_eval_candidate"], result["task_eval_served"]
    assert result["task_eval_passed"] is True
    assert candidate["task"]["f1"] >= served["task"]["f1"]
    assert candidate["file"]["style"] == result["style_rate_deployed"]
    # what the base knew is still known: the general answers' accuracy held (the gate's check)
    assert any("general answers' accuracy" in r and r.endswith(": ok") for r in result["gate"])
