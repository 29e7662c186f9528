"""The preference stage: DPO on pairs (or KTO on rated answers) with TRL, on top of the SFT
adapter, and the held-out preference accuracy the gate reads.

The stage continues training the same LoRA adapter the SFT stage trained (so the exporter's
single adapter carries both); TRL keeps a frozen copy of it (the ``ref`` adapter) as the
reference, so the stage moves the policy away from the SFT adapter, not from the base. The copy
is removed before the adapter is saved.

**Preference accuracy**: on held-out pairs, the share where the model gives the preferred answer
a higher log-likelihood than the other one (summed over the answer's tokens through its
end-of-turn token, the prompt rendered by the model's own chat template). For a correction that
adds a sign-off, this asks exactly: does the model go on to sign off, or stop?
"""

from __future__ import annotations

import logging
import tempfile
import time
from typing import Any, Literal

from hivemind_trainer.preference.data import PreferenceData, Record
from hivemind_trainer.recipe.chat_format import end_of_turn, render

log = logging.getLogger(__name__)

Objective = Literal["sft", "preference", "both"]
Stage = Literal["dpo", "kto"]


def choose_stage(data: PreferenceData, *, min_pairs: int, min_rated: int) -> Stage | None:
    """DPO when enough pairs exist, else KTO when enough rated answers of both kinds exist."""
    counts = data.counts()
    if counts["pairs"] >= min_pairs:
        return "dpo"
    if counts["good"] + counts["bad"] >= min_rated and counts["good"] and counts["bad"]:
        return "kto"
    return None


def _answer_logp(model: Any, tokenizer: Any, prompt: list[dict[str, str]], answer: str) -> float:
    import torch

    end = end_of_turn(tokenizer)
    head = render(tokenizer, prompt, generation_prompt=True)
    full = render(
        tokenizer, [*prompt, {"role": "assistant", "content": answer}], generation_prompt=False
    )
    cut = full.find(end, len(head))
    full = full[: cut + len(end)] if cut >= 0 else full
    head_ids = tokenizer(head, add_special_tokens=False)["input_ids"]
    ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    start = 0
    while start < min(len(head_ids), len(ids)) and head_ids[start] == ids[start]:
        start += 1
    start = max(start, 1)
    device = next(model.parameters()).device
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids], device=device)).logits[0].float()
    logp = torch.log_softmax(logits[start - 1 : len(ids) - 1], dim=-1)
    targets = torch.tensor(ids[start:], device=device)
    return float(logp.gather(1, targets[:, None]).sum())


def preference_accuracy(model: Any, tokenizer: Any, pairs: list[Record]) -> float | None:
    """Share of ``pairs`` whose preferred answer the model finds more likely (None: no pairs)."""
    if not pairs:
        return None
    was_training = model.training
    model.eval()
    try:
        wins = sum(
            1
            for p in pairs
            if _answer_logp(model, tokenizer, p["prompt"], p["chosen"])
            > _answer_logp(model, tokenizer, p["prompt"], p["rejected"])
        )
    finally:
        model.train(was_training)
    return round(wins / len(pairs), 4)


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def run_stage(
    stage: Stage,
    model: Any,
    tokenizer: Any,
    data: PreferenceData,
    *,
    steps: int,
    lr: float,
    beta: float,
    batch_size: int,
    max_length: int,
    seed: int,
) -> dict[str, Any]:
    """Train the model's LoRA adapter with TRL's DPO or KTO trainer; what it did."""
    from datasets import Dataset as HFDataset

    started = time.perf_counter()
    common: dict[str, Any] = dict(
        per_device_train_batch_size=batch_size,
        max_steps=steps,
        learning_rate=lr,
        beta=beta,
        max_length=max_length,
        lr_scheduler_type="constant",
        warmup_steps=0,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=model.device.type == "cpu",
        seed=seed,
        disable_tqdm=True,
        bf16=False,
        fp16=False,
        dataloader_num_workers=0,
        activation_checkpointing=False,
    )
    with tempfile.TemporaryDirectory(prefix="hivemind-pref-") as tmp:
        if stage == "dpo":
            from trl import DPOConfig, DPOTrainer

            rows = [
                {
                    "prompt": r["prompt"],
                    "chosen": _assistant(r["chosen"]),
                    "rejected": _assistant(r["rejected"]),
                }
                for r in data.pairs
            ]
            trainer: Any = DPOTrainer(
                model=model,
                args=DPOConfig(output_dir=tmp, **common),
                train_dataset=HFDataset.from_list(rows),
                processing_class=tokenizer,
            )
        else:
            from trl import KTOConfig, KTOTrainer

            rows = [
                {
                    "prompt": r["prompt"],
                    "completion": _assistant(
                        str(r["chosen"] if r["label"] == "good" else r["rejected"])
                    ),
                    "label": r["label"] == "good",
                }
                for r in data.rated
            ]
            trainer = KTOTrainer(
                model=model,
                args=KTOConfig(output_dir=tmp, **common),
                train_dataset=HFDataset.from_list(rows),
                processing_class=tokenizer,
            )
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        for callback in (PrinterCallback, ProgressCallback):  # the log, not stdout
            trainer.remove_callback(callback)
        output = trainer.train()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    _drop_reference_adapter(model)
    return {
        "stage": stage,
        "examples": len(rows),
        "steps": int(output.global_step),
        "final_loss": losses[-1] if losses else None,
        "losses": losses,
        "seconds": round(time.perf_counter() - started, 3),
        "beta": beta,
        "lr": lr,
    }


def _drop_reference_adapter(model: Any) -> None:
    """Remove TRL's frozen ``ref`` copy: only the trained adapter is saved and served."""
    config = getattr(model, "peft_config", None)
    if isinstance(config, dict) and "ref" in config:
        model.set_adapter("default")
        model.delete_adapter("ref")
