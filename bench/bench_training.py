"""Training throughput: our LoRA loop against a plain transformers Trainer + PEFT baseline.

Both start from the same base (SmolLM2 by default, dequantized once and cached) with the same
initial LoRA (checked: same seed, same A matrices), and train it with the same AdamW,
learning-rate schedule, clipping and steps on the same synthetic chats with the same
assistant-only labels. Every optimizer step sees the same chats in both: our recipe plans the
steps (:meth:`LoraRecipe.plan`: chats in a seeded order, as many per step as fill its rows) and
the baseline's dataset is those steps in that order, each padded to its longest chat by
``DataCollatorForSeq2Seq``; both average the loss over the step's labelled tokens. Ours packs
chats into rows (attention computed chat by chat), runs the frozen weights' matmuls in bf16 where
the CPU supports it (LoRA, attention and the LM head in float32) and computes logits only on
labelled tokens; the baseline runs in float32, as the Trainer does by default. Tokens/s counts
real (non-pad) tokens over the training loop only. Both final (last-step) train losses are
reported as each loop computed them (ours in its bf16 arithmetic, which reads a loss within about
±0.002 of float32), and both final models' loss on all the training chats and on the same
held-out chats, measured by one function in float32.

Environment: ``HIVEMIND_BENCH_TRAIN_CHATS`` (default 48), ``HIVEMIND_BENCH_BASE_HF`` (a HF dir to
use instead of SmolLM2), ``HIVEMIND_DATA_DIR`` (where the dequantized base is cached).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

SEQ_LEN = 512
ROWS_PER_STEP = 4


def _base_dir() -> Path:
    from hivemind_trainer.recipe.model_io import default_gguf, ensure_base_hf

    override = os.environ.get("HIVEMIND_BENCH_BASE_HF")
    if override:
        return Path(override)
    root = Path(os.environ.get("HIVEMIND_DATA_DIR", "var")) / "models" / "default"
    root.mkdir(parents=True, exist_ok=True)
    return ensure_base_hf(gguf=default_gguf(), hf_dir=None, cache_root=root)


def _lora_checksum(model: Any) -> float:
    """Sum of every LoRA A matrix at the start: equal sums mean the same initial adapter."""
    return round(
        float(sum(p.detach().double().sum() for n, p in model.named_parameters() if "lora_A" in n)),
        8,
    )


def _ours(base: Path, train: list[Any], heldout: list[Any]) -> dict[str, Any]:
    from hivemind_trainer.recipe.config import RecipeConfig
    from hivemind_trainer.recipe.lora_recipe import LoraRecipe
    from hivemind_trainer.recipe.loss import mean_loss

    cfg = RecipeConfig.from_mode("fast", seq_len=SEQ_LEN, batch_size=ROWS_PER_STEP, log_every=1)
    recipe = LoraRecipe(cfg, base)
    recipe.setup()
    checksum = _lora_checksum(recipe.model)
    prepared = recipe.prepare(train)
    plan = recipe.plan(prepared)
    result = recipe.train(prepared)
    assert result.steps == len(plan)
    held = recipe.prepare(heldout, check=False)
    eval_loss = mean_loss(recipe.model, recipe.batches(held), device="cpu", dtype=None)
    train_batches = recipe.batches(prepared)
    train_loss = mean_loss(recipe.model, train_batches, device="cpu", dtype=None)
    return {
        "steps": result.steps,
        "chats_per_step": [len(step) for step in plan],
        "seconds": round(result.seconds, 2),
        "tokens": result.tokens,
        "tokens_per_s": round(result.tokens_per_s, 1),
        "final_train_loss": round(result.final_loss, 4),
        "train_losses": [round(loss, 4) for _, loss in result.losses],
        "train_set_loss_float32": round(train_loss, 4),
        "heldout_loss": round(eval_loss, 4),
        "dtype": recipe.hardware.dtype if recipe.hardware else "?",
        "lora_init_checksum": checksum,
        "config": cfg.as_dict(),
        "_plan": [[prepared.chats[i] for i in step] for step in plan],
        "_train_batches": train_batches,
        "_recipe": recipe,
    }


def _baseline(
    base: Path,
    plan: list[list[Any]],
    train_batches: list[Any],
    heldout_batches: list[Any],
    cfg: dict[str, Any],
    tokenizer: Any,
) -> dict[str, Any]:
    """A plain Trainer + PEFT in float32 over the same steps: each dataset item is one step's
    chats, which the collator pads to the longest (``DataCollatorForSeq2Seq``), in order."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainingArguments,
    )

    from hivemind_trainer.recipe.config import RecipeConfig
    from hivemind_trainer.recipe.lora_recipe import lr_schedule
    from hivemind_trainer.recipe.loss import mean_loss

    torch.manual_seed(cfg["seed"])
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    model = get_peft_model(
        model,
        LoraConfig(
            r=cfg["lora_r"],
            lora_alpha=cfg["lora_alpha"],
            lora_dropout=0.0,
            target_modules=list(cfg["targets"]),
            bias="none",
            task_type="CAUSAL_LM",
        ),
    )
    checksum = _lora_checksum(model)
    steps = [[{"input_ids": c.input_ids, "labels": c.labels} for c in step] for step in plan]
    pad = DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=-100)
    args = TrainingArguments(
        output_dir=str(Path(os.environ.get("TMPDIR", "/tmp")) / "hm-bench-baseline"),
        per_device_train_batch_size=1,  # one item = one step's chats
        train_sampling_strategy="sequential",  # the steps in our order
        remove_unused_columns=False,
        max_steps=len(steps),
        learning_rate=cfg["lr"],
        warmup_steps=cfg["warmup_steps"],
        lr_scheduler_type="cosine",
        weight_decay=cfg["weight_decay"],
        max_grad_norm=cfg["grad_clip"],
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        seed=cfg["seed"],
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    # the same AdamW and learning-rate schedule as ours, so only the loop differs
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    recipe_cfg = RecipeConfig(**{**cfg, "targets": tuple(cfg["targets"])})
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_schedule(recipe_cfg, len(steps)))
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=[{"chats": step} for step in steps],
        data_collator=lambda items: pad(items[0]["chats"]),
        optimizers=(optimizer, scheduler),
    )
    began = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - began
    tokens = sum(len(c["input_ids"]) for step in steps for c in step)
    losses = [float(e["loss"]) for e in trainer.state.log_history if "loss" in e]
    eval_loss = mean_loss(model, heldout_batches, device="cpu", dtype=None)
    train_loss = mean_loss(model, train_batches, device="cpu", dtype=None)
    return {
        "steps": len(steps),
        "chats_per_step": [len(step) for step in steps],
        "seconds": round(seconds, 2),
        "tokens": tokens,
        "tokens_per_s": round(tokens / seconds, 1),
        "final_train_loss": round(losses[-1], 4) if losses else None,
        "train_losses": [round(loss, 4) for loss in losses],
        "train_set_loss_float32": round(train_loss, 4),
        "heldout_loss": round(eval_loss, 4),
        "dtype": "float32",
        "lora_init_checksum": checksum,
    }


def main(out_dir: Path) -> dict[str, Any]:
    """Run both, write ``training.json``, return the figures."""
    from hivemind_trainer.data.synthetic import make_chats

    n = int(os.environ.get("HIVEMIND_BENCH_TRAIN_CHATS", "48"))
    train, heldout = make_chats(n, seed=7), make_chats(16, seed=99)
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    base = _base_dir()
    base_s = time.perf_counter() - t0
    ours = _ours(base, train, heldout)
    plan, recipe, train_batches = ours.pop("_plan"), ours.pop("_recipe"), ours.pop("_train_batches")
    tokenizer = recipe.tokenizer
    heldout_batches = recipe.batches(recipe.prepare(heldout, check=False))
    recipe.cleanup()
    baseline = _baseline(base, plan, train_batches, heldout_batches, ours.pop("config"), tokenizer)
    assert baseline["lora_init_checksum"] == ours["lora_init_checksum"], "different LoRA init"
    assert baseline["chats_per_step"] == ours["chats_per_step"]
    assert baseline["tokens"] == ours["tokens"]
    result = {
        "base": str(base),
        "base_load_s": round(base_s, 2),
        "chats": n,
        "threads": os.cpu_count(),
        "ours": ours,
        "baseline_hf_trainer": baseline,
        "speedup": round(ours["tokens_per_s"] / baseline["tokens_per_s"], 2),
        "final_train_loss_delta": round(ours["final_train_loss"] - baseline["final_train_loss"], 4),
        "train_set_loss_float32_delta": round(
            ours["train_set_loss_float32"] - baseline["train_set_loss_float32"], 4
        ),
        "heldout_loss_delta": round(ours["heldout_loss"] - baseline["heldout_loss"], 4),
        "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "note": "CPU shared with other work: numbers are noisy",
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "training.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    print(json.dumps(main(Path("var/bench")), indent=2))
