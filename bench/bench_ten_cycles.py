"""Consecutive learning cycles on SmolLM2: does general loss stay near the base, disk use flat?

In one process (as ``bench_learning_cycle``): a real redis-server, inference on the shipped
SmolLM2, then N cycles, each with 100 new synthetic samples → ``run_cycle`` (train, anchored gate,
register) → the export worker (export, validate, deploy, retention). After every cycle it records
the candidate's general loss against the base's (both measured by the trainer on the same set),
what serves, and the bytes under ``models/``. Writes ``ten_cycles.json`` after every cycle, so an
interrupted run still leaves its figures. ``CYCLES`` (env) changes N (default 10).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))

TOKEN = "bench-internal-token"
SAMPLES = 100


def _bytes_under(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


async def _cycles(
    redis_url: str, data_dir: Path, inference_url: str, n: int, out: Path
) -> list[dict[str, Any]]:
    import httpx

    from hivemind_common import keys
    from hivemind_common.jobs import LearningSample
    from hivemind_common.model_registry import ModelRegistry
    from hivemind_common.redis import connect_redis
    from hivemind_exporter.settings import ExporterSettings
    from hivemind_exporter.worker import ExportWorker
    from hivemind_trainer.cycle import run_cycle
    from hivemind_trainer.data.synthetic import make_chats
    from hivemind_trainer.settings import TrainerSettings

    redis = connect_redis(redis_url)
    rows: list[dict[str, Any]] = []
    trainer = TrainerSettings(
        redis_url=redis_url,
        data_dir=data_dir,
        internal_token=TOKEN,
        worker_enabled=False,
        mode="fast",
        seq_len=256,
        idle_check=False,
    )
    exporter = ExporterSettings(
        redis_url=redis_url, data_dir=data_dir, internal_token=TOKEN, worker_enabled=False
    )
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        await redis.hset(keys.tenant_settings("bench"), "share_training", "1")
        async with httpx.AsyncClient(base_url=inference_url, headers=headers, timeout=300) as inf:
            worker = ExportWorker(redis=redis, settings=exporter, inference=inf)
            for i in range(n):
                t0 = time.perf_counter()
                for chat in make_chats(SAMPLES, seed=1000 + i):
                    sample = LearningSample(tenant="bench", source="api", messages=chat, rating=1.0)
                    await redis.xadd(keys.learning_stream(), sample.to_fields())
                cycle = await run_cycle(redis, trainer, requested_by="bench", reason="manual")
                outcomes = (
                    await worker.run_once(block_ms=1_000) if cycle.status == "exported" else []
                )
                served = (await inf.get("/v1/models")).json()["data"][0]["version"]
                registry = ModelRegistry(redis, data_dir)
                gate = cycle.gate or {}
                base_general = (gate.get("base") or {}).get("general")
                general = (gate.get("candidate") or {}).get("general")
                rows.append(
                    {
                        "cycle": i + 1,
                        "status": cycle.status,
                        "deployed": [o.result for o in outcomes],
                        "serving": served,
                        "registry_serving": (await registry.pointers("default")).get("serving"),
                        "general_loss": general,
                        "base_general_loss": base_general,
                        "general_vs_base": (general / base_general - 1)
                        if general and base_general
                        else None,
                        "heldout_loss": (gate.get("candidate") or {}).get("heldout"),
                        "reasons": gate.get("reasons"),
                        "versions_kept": len(await registry.list("default")),
                        "models_bytes": _bytes_under(data_dir / "models"),
                        "seconds": round(time.perf_counter() - t0, 1),
                    }
                )
                (out / "ten_cycles.json").write_text(json.dumps(rows, indent=2, default=str))
    finally:
        await redis.aclose()
    return rows


def main(out_dir: Path) -> list[dict[str, Any]]:
    from hivemind_inference.app import create_app
    from hivemind_inference.settings import InferenceSettings
    from support.redis_servers import standalone_redis
    from support.servers import serve_app

    out_dir.mkdir(parents=True, exist_ok=True)
    n = int(os.environ.get("CYCLES", "10"))
    with tempfile.TemporaryDirectory(prefix="bench-cycles-") as tmp:
        data_dir = Path(tmp) / "var"
        with standalone_redis(Path(tmp) / "redis") as server:
            settings = InferenceSettings(
                internal_token=TOKEN, redis_url=server.url, n_ctx=1024, threads=2, data_dir=data_dir
            )
            with serve_app(create_app(settings), ready_path="/readyz") as inference_url:
                return asyncio.run(_cycles(server.url, data_dir, inference_url, n, out_dir))


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1] if len(sys.argv) > 1 else "var/bench")), indent=2))
