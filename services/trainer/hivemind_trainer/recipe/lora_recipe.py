"""The LoRA recipe: ``setup / prepare / train / evaluate / save / cleanup``, one explicit loop.

Read ``train`` top to bottom: the chats in a seeded order, cut into steps that fill the batch's
rows (:meth:`LoraRecipe.plan`), packed, autocast forward (bf16 for the frozen weights' matmuls,
float32 for LoRA, attention and the LM head: :mod:`.precision`), loss on assistant tokens averaged
over the step's labelled tokens, backward, clip, AdamW step (float32 LoRA weights and moments),
warmup-then-cosine learning rate. The loss is kept on the device and read back only every
``log_every`` steps, so the loop never waits on the host.
Checkpoints (adapter, optimizer, step) every ``checkpoint_every`` steps let a killed run resume.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import random
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hivemind_common import train_estimate
from hivemind_common.errors import Invalid, Unprocessable
from hivemind_trainer.metrics import TRAIN_LOSS, TRAIN_STEP, TRAIN_TOKENS_PER_S
from hivemind_trainer.recipe import model_io
from hivemind_trainer.recipe.chat_format import (
    IGNORE,
    EncodedChat,
    answer_only,
    encode_chat,
    end_of_turn,
)
from hivemind_trainer.recipe.config import Hardware, RecipeConfig, detect_hardware
from hivemind_trainer.recipe.loss import labelled_scores, mean_loss, packed_loss_sum
from hivemind_trainer.recipe.optim import build_optimizer
from hivemind_trainer.recipe.packing import PackedBatch, build_batch, fill_steps, pack_rows
from hivemind_trainer.recipe.precision import recipe_forward
from hivemind_trainer.recipe.validators import ValidationReport, validate

log = logging.getLogger(__name__)

Chat = list[dict[str, str]]
Progress = Callable[[int, int, float | None], None]  # (step, total, loss or None)


@dataclass
class Prepared:
    chats: list[EncodedChat]
    rows: list[list[int]]
    report: ValidationReport
    dropped: int  # chats longer than seq_len


@dataclass
class TrainResult:
    steps: int
    final_loss: float
    losses: list[tuple[int, float]]
    tokens: int  # real (non-padding) tokens processed
    trained_tokens: int
    seconds: float
    resumed_from: int = 0
    memory_estimate_bytes: int = 0
    batch_size: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def _unlabelled(chat: EncodedChat) -> EncodedChat:
    return EncodedChat(chat.input_ids, [IGNORE] * len(chat.labels), chat.spans, chat.text)


def lr_schedule(cfg: RecipeConfig, total: int) -> Callable[[int], float]:
    """Learning-rate factor per step: linear warm-up, then cosine down to 10%."""

    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        span = max(1, total - cfg.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - cfg.warmup_steps) / span))

    return factor


class LoraRecipe:
    """Train a LoRA adapter on chats, starting from the served adapter when there is one."""

    def __init__(
        self,
        config: RecipeConfig,
        base_dir: Path,
        *,
        adapter_dir: Path | None = None,
        hardware: Hardware | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.config = config
        self.base_dir = base_dir
        self.adapter_dir = adapter_dir
        self.hardware = hardware
        self.progress = progress
        self.model: Any = None
        self.tokenizer: Any = None
        self.batch_size = config.batch_size

    # --- setup -----------------------------------------------------------------------------------
    def setup(self) -> None:
        """Hardware, memory check, tokenizer, model and adapter (or every weight, ``full``).

        The memory estimate (:mod:`hivemind_common.train_estimate`) comes first, from the base's
        ``config.json``: it picks the batch size when none is set, and a run that would not fit
        the free memory is refused before anything is loaded.
        """
        cfg = self.config
        torch.manual_seed(cfg.seed)
        self.hardware = self.hardware or detect_hardware(
            cfg.threads, method=cfg.method, dtype=cfg.dtype, checkpointing=cfg.checkpointing
        )
        hw = self.hardware
        full = cfg.method == "full"
        if full and self.adapter_dir is not None:
            raise Invalid("a full fine-tuning run starts from the base, not an adapter")
        self.batch_size, self.memory_estimate, estimate = self._fit_batch(hw)
        self.tokenizer = model_io.load_tokenizer(self.base_dir)
        base = model_io.load_model(
            self.base_dir,
            device=hw.torch_device,
            qlora=hw.qlora,
            weight_dtype=torch.float32 if full else hw.torch_weight_dtype,
            checkpointing=hw.checkpointing,
        )
        if full:
            self.model = model_io.make_full_trainable(base)
        else:
            self.model = model_io.attach_lora(
                base,
                adapter_dir=self.adapter_dir,
                r=cfg.lora_r,
                alpha=cfg.lora_alpha,
                dropout=cfg.lora_dropout,
                targets=cfg.targets,
                qlora=hw.qlora,
            )
        total, trainable = model_io.count_params(self.model)
        log.info(
            "recipe %s on %s (%s, base %s, %d threads%s%s): %d params, %d trainable, "
            "batch %d x %d, memory estimate %.0f MiB (%s) of %.0f MiB free",
            cfg.method,
            hw.device,
            hw.dtype,
            hw.weight_dtype if not hw.qlora else "nf4",
            hw.threads,
            ", QLoRA" if hw.qlora else "",
            ", checkpointing" if hw.checkpointing else "",
            total,
            trainable,
            self.batch_size,
            cfg.seq_len,
            self.memory_estimate / 2**20,
            ", ".join(
                f"{k} {v / 2**20:.0f}"
                for k, v in estimate.as_dict().items()
                if k not in {"total", "params", "trainable_params"}
            ),
            hw.free_memory_bytes / 2**20,
        )

    def estimate(self, hw: Hardware, batch: int) -> train_estimate.MemoryEstimate:
        """The memory estimate of this run at ``batch`` rows."""
        cfg = self.config
        shape = train_estimate.shape_from_path(Path(self.base_dir))
        return train_estimate.estimate_memory(
            shape,
            mode="qlora" if hw.qlora else ("full" if cfg.method == "full" else "lora"),
            seq_len=cfg.seq_len,
            batch=batch,
            optimizer=cfg.optimizer,
            checkpointing=hw.checkpointing,
            lora_rank=cfg.lora_r,
            lora_targets=tuple(cfg.targets),
            dtype=hw.dtype,
            device="cpu" if hw.device == "cpu" else "cuda",
            weight_dtype=hw.weight_dtype,
        )

    def _fit_batch(self, hw: Hardware) -> tuple[int, int, train_estimate.MemoryEstimate]:
        """(batch, estimated bytes, estimate): the requested batch, or the largest power of two
        (≤ 16 on a GPU, ≤ 4 on a CPU, where throughput stops growing) under 90% of the free
        memory; a run whose estimate does not fit is refused with the estimate's parts."""
        budget = int(hw.free_memory_bytes * 0.9)
        requested = self.config.batch_size
        if requested > 0:
            batch = requested
        else:
            batch = 1
            limit = 4 if hw.device == "cpu" else 16
            while batch * 2 <= limit and self.estimate(hw, batch * 2).total <= budget:
                batch *= 2
        est = self.estimate(hw, batch)
        if est.total > budget:
            raise Unprocessable(
                train_estimate.fits_message(
                    est,
                    available_bytes=budget,
                    what=f"training at batch {batch} x seq_len {self.config.seq_len}",
                )
            )
        return batch, est.total, est

    # --- data ------------------------------------------------------------------------------------
    def prepare(self, conversations: list[Chat], *, check: bool = True) -> Prepared:
        """Encode with the chat template, validate, and pack into rows."""
        end = end_of_turn(self.tokenizer, self.config.end_token)
        chats = [encode_chat(self.tokenizer, c, end_token=end) for c in conversations]
        keep = [i for i, c in enumerate(chats) if len(c.input_ids) <= self.config.seq_len]
        chats = [chats[i] for i in keep]
        convs = [conversations[i] for i in keep]
        report = ValidationReport(chats=len(chats))
        if check:
            report = validate(
                chats,
                convs,
                self.tokenizer,
                end_token=end,
                min_share=self.config.min_trained_share,
                max_share=self.config.max_trained_share,
            )
        rows = pack_rows(chats, self.config.seq_len)
        return Prepared(chats, rows, report, dropped=len(conversations) - len(keep))

    def batches(self, prepared: Prepared, order: list[int] | None = None) -> list[PackedBatch]:
        rows = [prepared.rows[i] for i in (order or range(len(prepared.rows)))]
        pad = int(self.tokenizer.pad_token_id)
        b = max(1, self.batch_size)
        return [
            build_batch(prepared.chats, rows[i : i + b], self.config.seq_len, pad)
            for i in range(0, len(rows), b)
        ]

    # --- train -----------------------------------------------------------------------------------
    def train(self, prepared: Prepared, *, checkpoint_dir: Path | None = None) -> TrainResult:
        cfg, hw = self.config, self.hardware
        assert hw is not None and self.model is not None, "call setup() first"
        plan = self.plan(prepared)
        if not plan:
            raise Unprocessable("no chat fits the recipe's sequence length: nothing to train on")
        total = len(plan)
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = build_optimizer(
            self.model, cfg.optimizer, lr=cfg.lr, weight_decay=cfg.weight_decay, device=hw.device
        )
        scheduler = optimizer.schedulers(lr_schedule(cfg, total))
        scaler = hw.make_scaler()  # fp16 only: scale the loss so small gradients survive
        fingerprint = self._fingerprint(prepared, plan)
        start = self._resume(checkpoint_dir, optimizer, scheduler, fingerprint)
        self.model.train()
        device, dtype = hw.torch_device, hw.autocast_dtype
        running = torch.zeros((), device=device)
        losses: list[tuple[int, float]] = []
        tokens = trained = 0
        began = time.perf_counter()
        last = float("nan")
        for step in range(start, total):
            batch = self._step_batch(prepared, plan[step])  # packed here, inside the timing
            with recipe_forward(self.model, dtype):  # the backward's recomputation sees it too
                loss_sum, n = packed_loss_sum(self.model, batch, device=device, dtype=dtype)
                loss = loss_sum / max(1, n)
                (loss if scaler is None else scaler.scale(loss)).backward()
            if scaler is None:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                optimizer.step()
            else:
                for opt in optimizer.optimizers:
                    scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                for opt in optimizer.optimizers:
                    scaler.step(opt)
                scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            running += loss.detach()
            tokens += batch.real_tokens
            trained += n
            done = step + 1
            if done % cfg.log_every == 0 or done == total:
                k = min(done - start, done % cfg.log_every or cfg.log_every)  # steps in the window
                last = float(running) / k  # the one host read every log_every steps
                running.zero_()
                losses.append((done, last))
                elapsed = time.perf_counter() - began
                TRAIN_LOSS.set(last)
                TRAIN_STEP.set(done)
                TRAIN_TOKENS_PER_S.set(tokens / elapsed if elapsed > 0 else 0.0)
                if self.progress:
                    self.progress(done, total, last)
            elif self.progress:
                self.progress(done, total, None)
            if checkpoint_dir is not None and done % cfg.checkpoint_every == 0 and done < total:
                self._checkpoint(checkpoint_dir, optimizer, scheduler, done, fingerprint)
        seconds = time.perf_counter() - began
        return TrainResult(
            steps=total,
            final_loss=last,
            losses=losses,
            tokens=tokens,
            trained_tokens=trained,
            seconds=seconds,
            resumed_from=start,
            memory_estimate_bytes=self.memory_estimate,
            batch_size=self.batch_size,
        )

    def plan(self, prepared: Prepared) -> list[list[int]]:
        """The chats (indices into ``prepared.chats``) of every optimizer step.

        Each epoch shuffles the chats with the recipe's seed and cuts that order into steps
        whose chats pack into ``batch_size`` rows; ``epochs`` (a fraction allowed) sets the
        count, raised to ``min_steps`` for a small set (at most ``max_epochs`` passes), and
        ``max_steps`` caps it. A benchmark can feed a padded loop the very same steps.
        """
        cfg = self.config
        if not prepared.chats:
            return []
        rng = random.Random(cfg.seed)
        steps: list[list[int]] = []
        total: int | None = None
        while total is None or len(steps) < total:
            order = list(range(len(prepared.chats)))
            rng.shuffle(order)
            epoch = fill_steps(prepared.chats, order, cfg.seq_len, max(1, self.batch_size))
            if not epoch:
                return []
            if total is None:
                total = max(1, math.ceil(len(epoch) * cfg.epochs))
                if total < cfg.min_steps:  # a small set: more passes, up to max_epochs
                    ceiling = max(total, math.ceil(len(epoch) * cfg.max_epochs))
                    total = min(cfg.min_steps, ceiling)
                if cfg.max_steps is not None:
                    total = min(total, cfg.max_steps)
            steps.extend(epoch)
        return steps[:total]

    def _step_batch(self, prepared: Prepared, chats: list[int]) -> PackedBatch:
        members = [prepared.chats[i] for i in chats]
        rows = pack_rows(members, self.config.seq_len)
        pad = int(self.tokenizer.pad_token_id)
        return build_batch(members, rows, self.config.seq_len, pad)

    def _fingerprint(self, prepared: Prepared, plan: list[list[int]]) -> str:
        """What a checkpoint's steps mean: the recipe's settings, the base (and starting
        adapter) it trains, the batch size, every step's chats and every chat's tokens and
        labels. A run resumed with any of them changed would apply step N of another plan."""
        h = hashlib.sha256()
        about = {
            "config": {
                k: v
                for k, v in dataclasses.asdict(self.config).items()
                if k not in _NOT_IN_FINGERPRINT
            },
            "batch_size": self.batch_size,
            "base": _files_identity(self.base_dir),
            "adapter": _files_identity(self.adapter_dir) if self.adapter_dir else None,
            "plan": plan,
        }
        h.update(json.dumps(about, sort_keys=True, default=str).encode())
        for chat in prepared.chats:
            h.update(array("q", chat.input_ids).tobytes())
            h.update(array("q", chat.labels).tobytes())
            h.update(b"|")
        return h.hexdigest()

    def _checkpoint(
        self, directory: Path, optimizer: Any, scheduler: Any, step: int, fingerprint: str
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / "state.pt.tmp"
        torch.save(
            {
                "step": step,
                "fingerprint": fingerprint,
                "adapter": {
                    k: v
                    for k, v in self.model.state_dict().items()
                    if self.config.method == "full" or "lora_" in k
                },
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
            },
            tmp,
        )
        tmp.replace(directory / "state.pt")

    def _resume(
        self, directory: Path | None, optimizer: Any, scheduler: Any, fingerprint: str
    ) -> int:
        path = directory / "state.pt" if directory is not None else None
        if path is None or not path.is_file():
            return 0
        state = torch.load(
            path, map_location=self.hardware.torch_device if self.hardware else "cpu"
        )
        if state.get("fingerprint") != fingerprint:
            # other data, settings or base since it was written (or a checkpoint of a version
            # that kept no fingerprint): its step counts another plan, so the run starts over
            log.warning(
                "checkpoint at step %s was made for other data, settings or base; not resumed",
                state.get("step"),
            )
            path.unlink(missing_ok=True)
            return 0
        self.model.load_state_dict(state["adapter"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        log.info("resuming from checkpoint at step %d", state["step"])
        return int(state["step"])

    # --- evaluate / save / cleanup ----------------------------------------------------------------
    def evaluate(self, conversations: list[Chat]) -> float:
        """Mean assistant-token loss of the model as it is now."""
        assert self.hardware is not None
        prepared = self.prepare(conversations, check=False)
        if not prepared.chats:
            return float("nan")
        return mean_loss(
            self.model,
            self.batches(prepared),
            device=self.hardware.torch_device,
            dtype=self.hardware.autocast_dtype,
        )

    def _prepare_answers(
        self, conversations: list[Chat], answers: list[str]
    ) -> tuple[Prepared, list[EncodedChat], list[int]]:
        """Chats that fit ``seq_len``, labelled on their answers only and packed into rows; the
        same chats labelled on their whole replies (in the same order); and their indices in
        ``conversations``."""
        if len(answers) != len(conversations):
            raise ValueError("one answer per conversation")
        end = end_of_turn(self.tokenizer, self.config.end_token)
        whole = [encode_chat(self.tokenizer, c, end_token=end) for c in conversations]
        fits = [i for i, enc in enumerate(whole) if len(enc.input_ids) <= self.config.seq_len]
        chats = [answer_only(self.tokenizer, whole[i], answers[i]) for i in fits]
        rows = pack_rows(chats, self.config.seq_len)
        report = ValidationReport(chats=len(chats))
        prepared = Prepared(chats, rows, report, dropped=len(conversations) - len(chats))
        return prepared, [whole[i] for i in fits], fits

    def answer_scores(
        self, conversations: list[Chat], answers: list[str], kinds: list[str] | None = None
    ) -> dict[str, tuple[float, float]]:
        """Teacher-forced (loss, accuracy) of the answers' tokens in the last replies (the
        general set's check of what the base knew, apart from the wording a style changes)
        under ``"answers"``, of the whole replies under ``"replies"``, and of each kind's
        answers under ``"kind:<kind>"``: all from one forward pass over the chats."""
        assert self.hardware is not None
        prepared, whole, index = self._prepare_answers(conversations, answers)
        pad = int(self.tokenizer.pad_token_id)
        b = max(1, self.batch_size)
        spans = [prepared.rows[i : i + b] for i in range(0, len(prepared.rows), b)]

        def labels_of(chats: list[EncodedChat]) -> list[torch.Tensor]:
            return [build_batch(chats, rows, self.config.seq_len, pad).labels for rows in spans]

        sets = {"replies": labels_of(whole)}
        for kind in sorted(set(kinds or [])):
            mine = [
                chat if kinds[i] == kind else _unlabelled(chat)  # type: ignore[index]
                for chat, i in zip(prepared.chats, index, strict=True)
            ]
            sets[f"kind:{kind}"] = labels_of(mine)
        if not prepared.chats:
            nan = (float("nan"), float("nan"))
            return {"answers": nan, **dict.fromkeys(sets, nan)}
        scores = labelled_scores(
            self.model,
            self.batches(prepared),
            device=self.hardware.torch_device,
            dtype=self.hardware.autocast_dtype,
            label_sets=sets,
        )
        return {"answers": scores.pop(""), **scores}

    def answer_scores_base(
        self, conversations: list[Chat], answers: list[str], kinds: list[str] | None = None
    ) -> dict[str, tuple[float, float]]:
        """:meth:`answer_scores` of the base alone."""
        if self.config.method == "full":
            return self.answer_scores(conversations, answers, kinds)
        with self.model.disable_adapter():
            return self.answer_scores(conversations, answers, kinds)

    def evaluate_base(self, conversations: list[Chat]) -> float:
        """Mean assistant-token loss of the base alone (every adapter switched off).

        A full run has no adapter to switch off: call this before training (the model is the
        base then)."""
        if self.config.method == "full":
            return self.evaluate(conversations)
        with self.model.disable_adapter():
            return self.evaluate(conversations)

    def save(self, out_dir: Path) -> None:
        """The PEFT adapter (safetensors + adapter_config.json), or the whole model and its
        tokenizer (a Hugging Face directory) after a full run."""
        out_dir.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(out_dir))
        if self.config.method == "full":
            self.tokenizer.save_pretrained(str(out_dir))

    def cleanup(self) -> None:
        self.model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


# settings that change how a run is watched or scheduled, not what its steps do
_NOT_IN_FINGERPRINT = frozenset({"threads", "log_every", "checkpoint_every"})


def _files_identity(directory: Path) -> list[tuple[str, int, int]]:
    """Name, size and modification time of each file directly in ``directory`` (a base's
    weights, config and tokenizer): a base replaced at the same path reads as another."""
    if not directory.is_dir():
        return []
    stats = [(p.name, p.stat()) for p in directory.iterdir() if p.is_file()]
    return sorted((name, st.st_size, st.st_mtime_ns) for name, st in stats)
