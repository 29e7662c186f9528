"""Training throughput, 2 x 2: our recipe and a plain Trainer + PEFT, each in float32 and bf16.

Both sides start from the same base (SmolLM2 by default, dequantized once and cached) with the
same initial LoRA and train it with the same AdamW, learning-rate schedule, clipping and planned
steps on the same synthetic chats with the same assistant-only labels: our recipe plans the steps
(:meth:`LoraRecipe.plan`: chats in a seeded order, as many per step as fill its rows) and the
baseline's dataset is those steps in that order, each padded to its longest chat by
``DataCollatorForSeq2Seq``; both average the loss over the step's labelled tokens. The precision
is the same on both sides of a pair: float32, or bf16 autocast (our recipe keeps LoRA, attention
and the head in float32 under it; the Trainer's ``bf16=True`` autocasts everything it can). bf16
runs only where the CPU computes it natively (``avx512_bf16`` / ``amx_bf16``) or on a GPU.

Every run is its own process (a clean peak RSS, ``VmHWM``), and the repeats are interleaved
(ours fp32, Trainer fp32, ours bf16, Trainer bf16, then again) so that a change in the machine's
load hits all four alike. Each side computes its own figures: real (non-pad) tokens, labelled
tokens, the initial LoRA checksum and chats per step; the bench checks that they agree. Tokens/s
counts real tokens over the training loop only. Reported losses: each loop's last-step train
loss, and both final models' loss on all training chats and on held-out chats, measured by one
float32 function. Speedups are medians over the repeats.

Environment: ``HIVEMIND_BENCH_TRAIN_CHATS`` (default 48), ``HIVEMIND_BENCH_REPEATS`` (default 3),
``HIVEMIND_BENCH_TRAIN_DTYPES`` (default: float32, plus bfloat16 where native),
``HIVEMIND_BENCH_BASE_HF`` (a HF dir instead of SmolLM2), ``HIVEMIND_DATA_DIR`` (the cache).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SEQ_LEN = 512
ROWS_PER_STEP = 4
IGNORE = -100


def _base_dir() -> Path:
    from hivemind_trainer.recipe.model_io import default_gguf, ensure_base_hf

    override = os.environ.get("HIVEMIND_BENCH_BASE_HF")
    if override:
        return Path(override)
    root = Path(os.environ.get("HIVEMIND_DATA_DIR", "var")) / "models" / "default"
    root.mkdir(parents=True, exist_ok=True)
    return ensure_base_hf(gguf=default_gguf(), hf_dir=None, cache_root=root)


def _peak_rss() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _lora_checksum(model: Any) -> float:
    """Sum of every LoRA A matrix at the start: equal sums mean the same initial adapter."""
    return round(
        float(sum(p.detach().double().sum() for n, p in model.named_parameters() if "lora_A" in n)),
        8,
    )


def _chats(n: int) -> tuple[list[Any], list[Any]]:
    from hivemind_trainer.data.synthetic import make_chats

    return make_chats(n, seed=7), make_chats(16, seed=99)


def _config(dtype: str) -> Any:
    from hivemind_trainer.recipe.config import RecipeConfig

    return RecipeConfig.from_mode(
        "fast", seq_len=SEQ_LEN, batch_size=ROWS_PER_STEP, log_every=1, dtype=dtype
    )


def _planner(base: Path, dtype: str, n: int) -> tuple[Any, Any, list[list[int]], Any]:
    """A recipe with only its tokenizer loaded: the data, prepared and planned."""
    from hivemind_trainer.recipe import model_io
    from hivemind_trainer.recipe.lora_recipe import LoraRecipe

    recipe = LoraRecipe(_config(dtype), base)
    recipe.tokenizer = model_io.load_tokenizer(base)
    recipe.batch_size = ROWS_PER_STEP
    train, heldout = _chats(n)
    prepared = recipe.prepare(train)
    return recipe, prepared, recipe.plan(prepared), heldout


def _eval_losses(recipe: Any, model: Any, prepared: Any, heldout: list[Any]) -> dict[str, float]:
    from hivemind_trainer.recipe.loss import mean_loss

    held = recipe.prepare(heldout, check=False)
    return {
        "train_set_loss_float32": round(
            mean_loss(model, recipe.batches(prepared), device="cpu", dtype=None), 4
        ),
        "heldout_loss_float32": round(
            mean_loss(model, recipe.batches(held), device="cpu", dtype=None), 4
        ),
    }


def run_ours(base: Path, dtype: str, n: int) -> dict[str, Any]:
    from hivemind_trainer.recipe.lora_recipe import LoraRecipe

    planner, prepared, plan, heldout = _planner(base, dtype, n)
    recipe = LoraRecipe(_config(dtype), base)
    recipe.setup()
    checksum = _lora_checksum(recipe.model)
    result = recipe.train(prepared)
    assert recipe.hardware is not None
    return {
        "side": "ours",
        "dtype": recipe.hardware.dtype,
        "steps": result.steps,
        "chats_per_step": [len(step) for step in plan],
        "seconds": round(result.seconds, 2),
        "tokens": result.tokens,
        "trained_tokens": result.trained_tokens,
        "tokens_per_s": round(result.tokens_per_s, 1),
        "final_train_loss": round(result.final_loss, 4),
        "lora_init_checksum": checksum,
        **_eval_losses(planner, recipe.model, prepared, heldout),
        "threads": recipe.hardware.threads,
    }


def run_trainer(base: Path, dtype: str, n: int) -> dict[str, Any]:
    """A plain Trainer + PEFT over the same steps: each dataset item is one step's chats, which
    the collator pads to the longest (``DataCollatorForSeq2Seq``), in order. Its tokens are
    counted from the collated attention masks and labels, not taken from our side."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainingArguments,
    )

    from hivemind_trainer.recipe.lora_recipe import lr_schedule

    planner, prepared, plan, heldout = _planner(base, dtype, n)
    cfg = planner.config
    torch.manual_seed(cfg.seed)
    loaded = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    model = get_peft_model(
        loaded,
        LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=0.0,
            target_modules=list(cfg.targets),
            bias="none",
            task_type="CAUSAL_LM",
        ),
    )
    checksum = _lora_checksum(model)
    steps = [
        [
            {"input_ids": prepared.chats[i].input_ids, "labels": prepared.chats[i].labels}
            for i in step
        ]
        for step in plan
    ]
    pad = DataCollatorForSeq2Seq(planner.tokenizer, padding="longest", label_pad_token_id=IGNORE)
    counted = {"tokens": 0, "trained": 0}

    def collate(items: list[dict[str, Any]]) -> Any:
        batch = pad(items[0]["chats"])
        counted["tokens"] += int(batch["attention_mask"].sum())
        counted["trained"] += int((batch["labels"][:, 1:] != IGNORE).sum())
        return batch

    args = TrainingArguments(
        output_dir=str(Path(os.environ.get("TMPDIR", "/tmp")) / "hm-bench-baseline"),
        per_device_train_batch_size=1,  # one item = one step's chats
        train_sampling_strategy="sequential",  # the steps in our order
        remove_unused_columns=False,
        max_steps=len(steps),
        learning_rate=cfg.lr,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.grad_clip,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        bf16=dtype == "bfloat16",
        seed=cfg.seed,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_schedule(cfg, len(steps)))
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=[{"chats": step} for step in steps],
        data_collator=collate,
        optimizers=(optimizer, scheduler),
    )
    began = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - began
    losses = [float(e["loss"]) for e in trainer.state.log_history if "loss" in e]
    return {
        "side": "trainer_peft",
        "dtype": dtype,
        "steps": len(steps),
        "chats_per_step": [len(step) for step in steps],
        "seconds": round(seconds, 2),
        "tokens": counted["tokens"],
        "trained_tokens": counted["trained"],
        "tokens_per_s": round(counted["tokens"] / seconds, 1),
        "final_train_loss": round(losses[-1], 4) if losses else None,
        "lora_init_checksum": checksum,
        **_eval_losses(planner, model, prepared, heldout),
        "threads": torch.get_num_threads(),
    }


def _native_bf16() -> bool:
    from hivemind_trainer.recipe.config import _cpu_has_bf16

    return _cpu_has_bf16()


def _cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    return sorted(f for f in flags if f.startswith(("avx", "amx", "fma")))
    except OSError:
        pass
    return []


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def main(out_dir: Path) -> dict[str, Any]:
    n = int(os.environ.get("HIVEMIND_BENCH_TRAIN_CHATS", "48"))
    repeats = int(os.environ.get("HIVEMIND_BENCH_REPEATS", "3"))
    wanted = os.environ.get("HIVEMIND_BENCH_TRAIN_DTYPES")
    dtypes = wanted.split(",") if wanted else ["float32", *(["bfloat16"] if _native_bf16() else [])]
    base = _base_dir()
    runs: list[dict[str, Any]] = []
    for rep in range(repeats):
        for dtype in dtypes:
            for side in ("ours", "trainer"):
                load = os.getloadavg()[0]
                proc = subprocess.run(
                    [sys.executable, "-m", "bench.bench_training", "--one", side, dtype, str(n)],
                    capture_output=True,
                    text=True,
                    check=False,
                    env={**os.environ, "HIVEMIND_BENCH_BASE_HF": str(base)},
                )
                if proc.returncode != 0:
                    raise RuntimeError(f"{side} {dtype} failed: {proc.stderr[-3000:]}")
                run = json.loads(proc.stdout.strip().splitlines()[-1])
                run.update(repeat=rep, load_average_1m=round(load, 2))
                runs.append(run)
                sys.stderr.write(json.dumps(run) + "\n")
    pairs: dict[str, Any] = {}
    for dtype in dtypes:
        ours = [r for r in runs if r["side"] == "ours" and r["dtype"] == dtype]
        theirs = [r for r in runs if r["side"] == "trainer_peft" and r["dtype"] == dtype]
        for key in ("tokens", "trained_tokens", "lora_init_checksum", "chats_per_step", "steps"):
            values = {json.dumps(r[key]) for r in ours + theirs}
            assert len(values) == 1, f"{dtype}: the two sides disagree on {key}: {values}"
        a, b = ours[-1], theirs[-1]
        pairs[dtype] = {
            "ours_tokens_per_s": [r["tokens_per_s"] for r in ours],
            "trainer_tokens_per_s": [r["tokens_per_s"] for r in theirs],
            "speedup_median": round(
                _median(ours, "tokens_per_s") / _median(theirs, "tokens_per_s"), 2
            ),
            "speedups_per_repeat": [
                round(x["tokens_per_s"] / y["tokens_per_s"], 2)
                for x, y in zip(ours, theirs, strict=True)
            ],
            "ours_peak_rss_mib": _median(ours, "peak_rss_mib"),
            "trainer_peak_rss_mib": _median(theirs, "peak_rss_mib"),
            "final_train_loss": [a["final_train_loss"], b["final_train_loss"]],
            "train_set_loss_float32": [a["train_set_loss_float32"], b["train_set_loss_float32"]],
            "heldout_loss_float32": [a["heldout_loss_float32"], b["heldout_loss_float32"]],
            "train_set_loss_rel_diff": round(
                abs(a["train_set_loss_float32"] - b["train_set_loss_float32"])
                / b["train_set_loss_float32"],
                4,
            ),
            "tokens": a["tokens"],
            "steps": a["steps"],
        }
    result = {
        "base": str(base),
        "chats": n,
        "repeats": repeats,
        "cpu_flags": _cpu_flags(),
        "cpus": os.cpu_count(),
        "pairs": pairs,
        "runs": runs,
        "note": "CPU shared with other work: see each run's load average",
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "training.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--one":
        side, dtype, count = sys.argv[2], sys.argv[3], int(sys.argv[4])
        fn = run_ours if side == "ours" else run_trainer
        out = fn(_base_dir(), dtype, count)
        out["peak_rss_mib"] = round(_peak_rss() / 2**20)
        print(json.dumps(out))
    else:
        print(json.dumps(main(Path("var/bench")), indent=2))
