"""The memory estimator against measured peaks: LoRA and full runs of the recipe on SmolLM2.

Each configuration runs in its own process (so one run's allocations do not hide another's):
the recipe's setup and a few training steps at a fixed batch, then the process's peak resident
memory (``VmHWM``) and its growth over the interpreter with torch and transformers imported
(peak minus the RSS just before the model is loaded). The estimate is
:func:`hivemind_common.train_estimate.estimate_memory` for the same run, with the share of
trained tokens measured on the data. ``ratio`` = estimate total / measured peak.

Environment: ``HIVEMIND_BENCH_BASE_HF`` (a HF dir instead of SmolLM2), ``HIVEMIND_DATA_DIR``,
``HIVEMIND_BENCH_TRAIN_DTYPE`` (``float32``, the default, or ``bfloat16``: the recipe's default
on a CPU with native bf16; written to ``train_memory_bfloat16.json``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SEQ_LEN = 512
CONFIGS: list[dict[str, Any]] = [
    {"method": "lora", "batch": 1, "checkpointing": False, "optimizer": "adamw"},
    {"method": "lora", "batch": 4, "checkpointing": False, "optimizer": "adamw"},
    {"method": "lora", "batch": 4, "checkpointing": True, "optimizer": "adamw"},
    {"method": "full", "batch": 1, "checkpointing": False, "optimizer": "adamw"},
    {"method": "full", "batch": 2, "checkpointing": True, "optimizer": "adamw"},
    {"method": "full", "batch": 2, "checkpointing": True, "optimizer": "muon"},
]


def _status(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _one(base: Path, conf: dict[str, Any]) -> dict[str, Any]:
    import torch  # noqa: F401  (imported before the baseline reading)
    import transformers  # noqa: F401

    from hivemind_common import train_estimate
    from hivemind_trainer.data.synthetic import make_chats
    from hivemind_trainer.recipe.config import RecipeConfig
    from hivemind_trainer.recipe.lora_recipe import LoraRecipe

    rss0 = _status("VmRSS")
    cfg = RecipeConfig.from_mode(
        "fast",
        seq_len=SEQ_LEN,
        batch_size=conf["batch"],
        max_steps=3,
        method=conf["method"],
        optimizer=conf["optimizer"],
        checkpointing=conf["checkpointing"],
        dtype=conf["dtype"],
        log_every=1,
    )
    recipe = LoraRecipe(cfg, base)
    recipe.setup()
    prepared = recipe.prepare(make_chats(64, seed=7), check=False)
    share = sum(c.trained for c in prepared.chats) / sum(len(c.input_ids) for c in prepared.chats)
    recipe.train(prepared)
    peak = _status("VmHWM")
    assert recipe.hardware is not None
    est = train_estimate.estimate_memory(
        train_estimate.shape_from_path(base),
        mode=conf["method"],
        seq_len=SEQ_LEN,
        batch=conf["batch"],
        optimizer=conf["optimizer"],
        checkpointing=conf["checkpointing"],
        lora_rank=cfg.lora_r,
        lora_targets=tuple(cfg.targets),
        dtype=recipe.hardware.dtype,
        weight_dtype=recipe.hardware.weight_dtype,
        trained_share=share,
    )
    return {
        **conf,
        "seq_len": SEQ_LEN,
        "trained_share": round(share, 3),
        "measured_peak_mib": round(peak / 2**20),
        "measured_growth_mib": round((peak - rss0) / 2**20),
        "rss_before_model_mib": round(rss0 / 2**20),
        "estimate_mib": {k: round(v / 2**20) for k, v in est.as_dict().items()},
        "ratio_total_to_peak": round(est.total / peak, 3),
        "ratio_without_overhead_to_growth": round((est.total - est.overhead) / (peak - rss0), 3),
    }


def _base_dir() -> Path:
    from hivemind_trainer.recipe.model_io import default_gguf, ensure_base_hf

    override = os.environ.get("HIVEMIND_BENCH_BASE_HF")
    if override:
        return Path(override)
    root = Path(os.environ.get("HIVEMIND_DATA_DIR", "var")) / "models" / "default"
    root.mkdir(parents=True, exist_ok=True)
    return ensure_base_hf(gguf=default_gguf(), hf_dir=None, cache_root=root)


def main(out_dir: Path) -> dict[str, Any]:
    base = _base_dir()
    dtype = os.environ.get("HIVEMIND_BENCH_TRAIN_DTYPE", "float32")
    runs = []
    for conf in ({**c, "dtype": dtype} for c in CONFIGS):
        began = time.perf_counter()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.bench_train_memory",
                "--one",
                str(base),
                json.dumps(conf),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{conf} failed: {proc.stderr[-2000:]}")
        run = json.loads(proc.stdout.strip().splitlines()[-1])
        run["seconds"] = round(time.perf_counter() - began, 1)
        runs.append(run)
        sys.stderr.write(json.dumps(run) + "\n")
    result = {
        "base": str(base),
        "runs": runs,
        "max_error": round(max(abs(r["ratio_total_to_peak"] - 1) for r in runs), 3),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    name = "train_memory.json" if dtype == "float32" else f"train_memory_{dtype}.json"
    (out_dir / name).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--one":
        print(json.dumps(_one(Path(sys.argv[2]), json.loads(sys.argv[3]))))
    else:
        print(json.dumps(main(Path("var/bench")), indent=2))
