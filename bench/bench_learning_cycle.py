"""The whole learning cycle on SmolLM2, timed by stage: 100 samples in → serving a new version.

In one process, as the end-to-end test runs it: a real redis-server, the inference service on
the shipped SmolLM2 (uvicorn in a thread), the trainer's ``run_cycle`` (collect, base load, train,
evaluate, register) and the exporter's worker (export, validate, deploy by hot-swap). Samples go
straight onto the learning stream (the gateway's ``POST /v1/learning/samples`` only adds one
XADD each). The base's caches (its dequantized copy, its f16 GGUF, and its figures on the fixed
general set, in torch and in llama.cpp) are cold on the first run in a fresh data directory and
warm afterwards, as they are after a deployment's first cycle; the run says which.

Then (``HIVEMIND_BENCH_CYCLES``, default 2) another 100 samples and a second cycle, as a
deployment's later cycles run: against the version the first deployed (its answers and
losses measured beside the candidate's, the base as the losses' control) and with some of the
first cycle's samples replayed; its figures are under ``next_cycles``.

Target (issue 19): 100 samples → deployed in ≤ 120 s on this machine (CPU) with the other
services idle, for each cycle. The 1-minute load average is recorded with the figures. Writes
``learning_cycle.json``.
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
if str(REPO / "tests") not in sys.path:  # reuse the fixtures' server starters
    sys.path.insert(0, str(REPO / "tests"))

TOKEN = "bench-internal-token"
SAMPLES = 100
# cycles in a row: the first is a deployment's first (the base serves), a second the steady
# state (it compares with the version the first deployed, and replays some of its samples)
CYCLES = max(1, int(os.environ.get("HIVEMIND_BENCH_CYCLES", "2")))


async def _cycles(
    redis_url: str, data_dir: Path, inference_url: str, count: int
) -> list[dict[str, Any]]:
    """``count`` cycles in a row: the first against the base, each later one against the
    version the one before deployed (what a deployment's cycles are after its first)."""
    runs = []
    for i in range(count):
        runs.append(await _cycle(redis_url, data_dir, inference_url, seed=11 + i, first=i == 0))
    return runs


async def _cycle(
    redis_url: str, data_dir: Path, inference_url: str, *, seed: int, first: bool
) -> dict[str, Any]:
    """One cycle, timed by stage. The first must deploy (else the bench fails); a later one
    that a gate refuses is recorded with the refusal and the stages it ran."""
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
    stages: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        await redis.hset(keys.tenant_settings("bench"), "share_training", "1")  # opted in
        served_before = (await ModelRegistry(redis, data_dir).pointers("default")).get("serving")
        for chat in make_chats(SAMPLES, seed=seed):
            sample = LearningSample(tenant="bench", source="api", messages=chat, rating=1.0)
            await redis.xadd(keys.learning_stream(), sample.to_fields())
        stages["ingest_s"] = time.perf_counter() - t0

        trainer = TrainerSettings(
            redis_url=redis_url,
            data_dir=data_dir,
            internal_token=TOKEN,
            worker_enabled=False,
            mode="fast",
            seq_len=256,
        )
        t1 = time.perf_counter()
        cycle = await run_cycle(redis, trainer, requested_by="bench", reason="manual")
        stages["cycle_s"] = time.perf_counter() - t1
        for key, value in cycle.timings.items():
            stages[f"trainer_{key}"] = value
        train = {
            k: cycle.train.get(k)
            for k in (
                "steps",
                "tokens",
                "tokens_per_s",
                "base_general_scores",
                "served_general_scores",
            )
        }
        if cycle.status != "exported" or cycle.version is None:
            if first:
                raise RuntimeError(f"the cycle made no deployable version: {cycle.as_dict()}")
            return {
                "version": cycle.version,
                "served_before": served_before or "base",
                "outcome": f"{cycle.status} by the trainer's gate",
                "reasons": (cycle.gate or {}).get("reasons"),
                "stages_s": {k: round(v, 3) for k, v in stages.items()},
                "train": train,
            }

        exporter = ExporterSettings(
            redis_url=redis_url, data_dir=data_dir, internal_token=TOKEN, worker_enabled=False
        )
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=inference_url, headers=headers, timeout=300) as inf:
            worker = ExportWorker(redis=redis, settings=exporter, inference=inf)
            t2 = time.perf_counter()
            outcomes = await worker.run_once(block_ms=1_000)
            stages["export_and_deploy_s"] = time.perf_counter() - t2
            served = (await inf.get("/v1/models")).json()["data"][0]["version"]
        deployed = [o.result for o in outcomes] == ["succeeded"] and served == cycle.version
        if first and not deployed:
            raise RuntimeError(f"export/deploy did not finish: {outcomes}, serving {served}")
        stages["total_s"] = time.perf_counter() - t0

        registry = ModelRegistry(redis, data_dir)
        manifest = registry.read_manifest("default", cycle.version)
        outcome = (
            "deployed"
            if deployed
            else "; ".join(f"{o.result}: {o.detail}" for o in outcomes) or "no export job ran"
        )
        record = {
            "version": cycle.version,
            "served_before": served_before or "base",
            "outcome": outcome,
            "train": train,
            "gate": cycle.gate,
        }
        if "export" not in manifest:  # the export failed before it recorded anything
            return {**record, "stages_s": {k: round(v, 3) for k, v in stages.items()}}
        for key, value in manifest["export"]["timings_s"].items():
            stages[f"export_{key}_s"] = value
        deploy = (await registry.get("default", cycle.version)).model_dump().get("deploy") or {}
        stages["deploy_s"] = deploy.get("seconds", float("nan"))
        stages["deploy_swap_ms"] = deploy.get("swap_ms") or float("nan")
        return {
            **record,
            "stages_s": {k: round(v, 3) for k, v in stages.items()},
            "validation": manifest["export"]["validation"],
            "task_gate": {
                k: (manifest.get("task_eval") or {}).get(k) for k in ("passed", "reasons")
            },
            "task_eval_seconds": {
                label: {k: run.get(k) for k in ("seconds", "seconds_by_part", "general_measured")}
                for label, run in (manifest.get("task_eval") or {}).items()
                if label in ("candidate", "served", "base")
            },
            "serve": manifest["serve"],
        }
    finally:
        await redis.aclose()


def main(out_dir: Path) -> dict[str, Any]:
    from hivemind_inference.app import create_app
    from hivemind_inference.settings import InferenceSettings
    from support.redis_servers import standalone_redis
    from support.servers import serve_app

    out_dir.mkdir(parents=True, exist_ok=True)
    shared = Path(os.environ.get("HIVEMIND_DATA_DIR", "var")) / "models" / "default" / "base-hf"
    with tempfile.TemporaryDirectory(prefix="bench-cycle-") as tmp:
        data_dir = Path(tmp) / "var"
        cache_warm = any(shared.glob("*/config.json"))  # keyed by the base's sha256
        if cache_warm:  # reuse the dequantized base other benchmarks cached
            (data_dir / "models" / "default").mkdir(parents=True)
            os.symlink(shared.resolve(), data_dir / "models" / "default" / "base-hf")
            # and the f16 copy the adapter is validated on (made by the first run, then kept)
            base_f16 = shared.parent / "base-f16"
            base_f16.mkdir(exist_ok=True)
            os.symlink(base_f16.resolve(), data_dir / "models" / "default" / "base-f16")
        with standalone_redis(Path(tmp) / "redis") as server:
            settings = InferenceSettings(
                internal_token=TOKEN, redis_url=server.url, n_ctx=1024, threads=2
            )
            with serve_app(create_app(settings), ready_path="/readyz") as inference_url:
                runs = asyncio.run(_cycles(server.url, data_dir, inference_url, CYCLES))
    result = runs[0]  # the first cycle (the base serves): its figures at the top
    result.update(
        next_cycles=[
            {
                k: run.get(k)
                for k in (
                    "version",
                    "served_before",
                    "outcome",
                    "reasons",
                    "stages_s",
                    "train",
                    "gate",
                    "task_gate",
                    "task_eval_seconds",
                )
                if k in run
            }
            for run in runs[1:]
        ],
        samples=SAMPLES,
        base_cache="warm" if cache_warm else "cold",
        # whether the base's general-set figures came from its caches (else measured here)
        base_general_figures_cached={
            "torch": result["train"].get("base_general_scores") == "cached",
            "llama_cpp": (result["task_eval_seconds"].get("base") or {}).get("general_measured")
            == 0,
        },
        target_total_s=120,
        load_average_1m_at_end=round(os.getloadavg()[0], 2),
        cpus=os.cpu_count(),
    )
    (out_dir / "learning_cycle.json").write_text(json.dumps(result, indent=2, default=str))
    return result


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1] if len(sys.argv) > 1 else "var/bench")), indent=2))
