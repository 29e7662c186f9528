"""The gate on what users would get: the task eval and the losses, in llama.cpp, on served files.

The trainer leaves ``<version>/eval/`` (:mod:`hivemind_trainer.eval.task_set`): task items
(prompt, reference, optional style check) and the held-out and general chats of its loss gate.
Here each is run on llama.cpp with the files that would be served (the quantized base plus
``adapter.gguf``, or the merged file), and on the served version's files (or the base alone
when no version serves yet), the chats rendered by the GGUF's own template as inference does:

- **task eval**: greedy answers (``max_tokens`` bounded by the reference's length), scored by
  token F1, exact match and the item's style check (:mod:`hivemind_common.task_eval`);
- **losses**: mean next-token loss over the answer tokens (through the end-of-turn token) of
  every chat, from llama.cpp's logits (``logits_all``), for the candidate, the served version and
  the base.

The candidate must not be worse than the served version on the task eval (F1 and style); both
figures, the losses and a few answers side by side go into the manifest.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hivemind_common.errors import HivemindError, UpstreamError
from hivemind_common.task_eval import compare, score

log = logging.getLogger(__name__)

EVAL_DIR = "eval"
TASK_FILE = "task.jsonl"
LOSS_FILE = "losses.json"


class TaskEvalRejected(HivemindError):
    """The candidate answers worse than the served version on the files users would get."""

    status = 422
    code = "task_eval_rejected"
    title = "The candidate is worse than the served version on the task eval"


@dataclass
class Files:
    """One configuration to measure: a GGUF and an optional LoRA GGUF."""

    label: str
    gguf: Path
    lora: Path | None = None

    def key(self) -> tuple[str, str | None]:
        return (str(self.gguf), str(self.lora) if self.lora else None)


class ChatModel:
    """A llama.cpp model with the GGUF's chat template (as inference renders chats)."""

    def __init__(self, files: Files, *, n_ctx: int, threads: int | None) -> None:
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        try:
            self.llm = llama_cpp.Llama(
                model_path=str(files.gguf),
                lora_path=str(files.lora) if files.lora else None,
                n_ctx=n_ctx,
                n_batch=min(n_ctx, 512),
                logits_all=True,
                n_threads=threads or min(4, os.cpu_count() or 1),
                seed=0,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise UpstreamError(f"llama.cpp could not load {files.gguf.name}: {exc}") from exc
        self.n_ctx = n_ctx
        vocab = self.llm._model
        self.eos_text = vocab.token_get_text(self.llm.token_eos())
        template = self.llm.metadata.get("tokenizer.chat_template")
        self.formatter: Any = (
            Jinja2ChatFormatter(
                template=template,
                eos_token=self.eos_text,
                bos_token=vocab.token_get_text(self.llm.token_bos()),
            )
            if template
            else None
        )

    def prompt(self, messages: list[dict[str, Any]]) -> str:
        if self.formatter is None:
            return "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant: "
        return str(self.formatter(messages=messages).prompt)

    def tokens(self, text: str) -> list[int]:
        return list(self.llm.tokenize(text.encode(), add_bos=False, special=True))

    def answer(self, messages: list[dict[str, Any]], max_tokens: int) -> str:
        prompt = self.prompt(messages)
        if len(self.tokens(prompt)) + max_tokens > self.n_ctx:
            return ""
        out: Any = self.llm.create_completion(
            prompt=prompt,
            max_tokens=max_tokens,
            temperature=0.0,
            stop=[self.eos_text] if self.eos_text else [],
        )
        return str(out["choices"][0]["text"]).strip()

    def answer_loss(self, chat: list[dict[str, Any]]) -> tuple[float, int]:
        """Summed negative log-likelihood of the last answer's tokens (and their count)."""
        prompt = self.prompt(chat[:-1])
        full = prompt + str(chat[-1].get("content") or "") + self.eos_text
        head, ids = self.tokens(prompt), self.tokens(full)
        if len(ids) > self.n_ctx or len(ids) <= len(head):
            return 0.0, 0
        start = len(head) if ids[: len(head)] == head else _common_prefix(head, ids)
        self.llm.reset()
        self.llm.eval(ids)
        logits = np.asarray(self.llm.scores[: len(ids)], dtype=np.float64)
        rows = logits[start - 1 : len(ids) - 1]
        targets = np.asarray(ids[start:])
        top = rows.max(axis=-1, keepdims=True)
        log_z = np.log(np.exp(rows - top).sum(axis=-1)) + top[:, 0]
        nll = log_z - rows[np.arange(len(targets)), targets]
        return float(nll.sum()), len(targets)

    def close(self) -> None:
        self.llm.close()


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return max(n, 1)


@contextlib.contextmanager
def opened(files: Files, *, n_ctx: int, threads: int | None) -> Iterator[ChatModel]:
    model = ChatModel(files, n_ctx=n_ctx, threads=threads)
    try:
        yield model
    finally:
        model.close()


def load_eval_set(version_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Any]] | None:
    """The items and loss chats the trainer left, or None for a version made without them."""
    directory = version_dir / EVAL_DIR
    if not (directory / TASK_FILE).is_file():
        return None
    items = [json.loads(line) for line in (directory / TASK_FILE).read_text().splitlines() if line]
    losses_path = directory / LOSS_FILE
    losses = json.loads(losses_path.read_text()) if losses_path.is_file() else {}
    return items, losses


def _max_tokens(model: ChatModel, reference: str, cap: int) -> int:
    return max(16, min(cap, int(len(model.tokens(reference)) * 1.5) + 8))


def measure(
    files: Files,
    items: list[dict[str, Any]],
    losses: dict[str, Any],
    *,
    n_ctx: int,
    threads: int | None,
    max_tokens: int,
) -> dict[str, Any]:
    """Answers, their scores and the answer losses of one configuration."""
    started = time.perf_counter()
    with opened(files, n_ctx=n_ctx, threads=threads) as model:
        answers = [
            model.answer(it["messages"], _max_tokens(model, it["reference"], max_tokens))
            for it in items
        ]
        measured: dict[str, float | None] = {}
        counted: dict[str, int] = {}
        for part in ("heldout", "general"):
            total, n = 0.0, 0
            for chat in losses.get(part) or []:
                s, k = model.answer_loss(chat)
                total, n = total + s, n + k
            measured[part] = round(total / n, 5) if n else None
            counted[part] = n
    return {
        "files": {"gguf": files.gguf.name, "lora": files.lora.name if files.lora else None},
        "scores": score(items, answers),
        "losses": measured,
        "loss_tokens": counted,
        "answers": answers,
        "seconds": round(time.perf_counter() - started, 2),
    }


def served_eval(
    version_dir: Path,
    candidate: Files,
    served: Files,
    base: Files,
    *,
    tolerance: float = 0.0,
    n_ctx: int = 2048,
    threads: int | None = None,
    max_tokens: int = 128,
) -> dict[str, Any] | None:
    """Run both sides (and the base for the losses); the report for the manifest, or None when
    the version has no eval set. ``report["passed"]`` is the task gate's decision."""
    loaded = load_eval_set(version_dir)
    if loaded is None:
        return None
    items, losses = loaded
    runs: dict[str, dict[str, Any]] = {}
    by_files: dict[tuple[str, str | None], dict[str, Any]] = {}
    for files in (candidate, served, base):
        if files.key() in by_files:  # the served version may be the base itself
            runs[files.label] = by_files[files.key()]
            continue
        runs[files.label] = measure(
            files, items, losses, n_ctx=n_ctx, threads=threads, max_tokens=max_tokens
        )
        by_files[files.key()] = runs[files.label]
    passed, reasons = compare(
        runs["candidate"]["scores"], runs["served"]["scores"], tolerance=tolerance
    )
    if candidate.key() != base.key() and _same_losses(runs["candidate"], runs["base"]):
        passed = False
        reasons.append(
            "control: in llama.cpp the served files score exactly as the base alone, so the "
            "adapter changes nothing there (or was not applied)"
        )
    examples = [
        {
            "kind": it["kind"],
            "prompt": str(it["messages"][-1].get("content") or "")[:200],
            "reference": it["reference"][:200],
            "candidate": runs["candidate"]["answers"][i][:200],
            "served": runs["served"]["answers"][i][:200],
        }
        for i, it in enumerate(items[:6])
    ]
    report = {
        "passed": passed,
        "reasons": reasons,
        "tolerance": tolerance,
        "served_version": served.label if served.label != "served" else None,
        **{label: {k: v for k, v in run.items() if k != "answers"} for label, run in runs.items()},
        "examples": examples,
        "general_set": losses.get("general_set"),
    }
    log.info(
        "task eval on the served files",
        extra={
            "candidate_f1": runs["candidate"]["scores"]["task"]["f1"],
            "served_f1": runs["served"]["scores"]["task"]["f1"],
            "passed": passed,
        },
    )
    return report


def _same_losses(a: dict[str, Any], b: dict[str, Any]) -> bool:
    pairs = [
        (a["losses"][k], b["losses"][k])
        for k in ("heldout", "general")
        if a["losses"].get(k) is not None and b["losses"].get(k) is not None
    ]
    return bool(pairs) and all(abs(x - y) <= 1e-6 * max(1.0, abs(y)) for x, y in pairs)


def metrics_of(report: dict[str, Any]) -> dict[str, Any]:
    """The figures ``/v1/models/versions`` and ``hivemind learn status`` show."""
    cand, served, base = report["candidate"], report["served"], report["base"]
    task, served_task = cand["scores"]["task"], served["scores"]["task"]
    general = cand["scores"].get("general") or {}
    return {
        "task_f1": task["f1"],
        "task_exact": task["exact"],
        "task_style": task["style"],
        "task_items": task["items"],
        "served_task_f1": served_task["f1"],
        "served_task_style": served_task["style"],
        "task_general_f1": general.get("f1"),
        "task_eval_passed": report["passed"],
        "llama_heldout_loss": cand["losses"]["heldout"],
        "llama_general_loss": cand["losses"]["general"],
        "llama_served_heldout_loss": served["losses"]["heldout"],
        "llama_served_general_loss": served["losses"]["general"],
        "llama_base_general_loss": base["losses"]["general"],
    }
