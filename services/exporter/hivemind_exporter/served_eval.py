"""The gate on what users would get: the task eval and the losses, in llama.cpp, on served files.

The trainer leaves ``<version>/eval/`` (:mod:`hivemind_trainer.eval.task_set`): task items
(prompt, reference, optional style check) and the held-out and general chats of its loss gate.
Here each is run on llama.cpp with the files that would be served (the quantized base plus
``adapter.gguf``, or the merged file), and on the served version's files (or the base alone
when no version serves yet), the chats rendered by the GGUF's own template as inference does:

- **task eval**: greedy answers (``max_tokens`` bounded by the reference's length), scored by
  token F1, exact match and the item's style check (:mod:`hivemind_common.task_eval`);
- **losses**: mean next-token loss over the answer tokens (through the end-of-turn token) of
  every chat, from llama.cpp's logits, for the candidate, the served version and the base. Only
  the positions that predict an answer token ask llama.cpp for logits (a batch's per-token
  output flags): the model is loaded without ``logits_all``, so neither these chats' prompts nor
  the task answers' prompts pay for the 49k-wide output layer at every position, nor for
  llama-cpp-python's ``n_ctx x n_vocab`` copy of it.

The candidate must not be worse than the served version on the task eval (F1 and style); both
figures, the losses and a few answers side by side go into the manifest.

The general set's items and chats never change, and neither do a configuration's files: the base
GGUF, or a version's files once written. A configuration's answers and losses on the general set
are kept (:class:`FixedResults`, one JSON per files and settings): the base's beside its f16 copy
(``models/<name>/base-f16/eval-cache/``), a candidate's in its version's ``eval-cache/``, where the
next export reads them as the served version's. Held-out items change from cycle to cycle and are
always run. A configuration whose every item and chat is known is not even loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
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
from hivemind_common.files import file_sha256, keep_json
from hivemind_common.task_eval import TASK_TOLERANCE, compare, score

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
    """One configuration to measure: a GGUF and an optional LoRA GGUF; ``cache``: the folder
    of its results on the general set (``keep``: results measured now are written there)."""

    label: str
    gguf: Path
    lora: Path | None = None
    cache: Path | None = None
    keep: bool = False

    def key(self) -> tuple[str, str | None]:
        return (str(self.gguf), str(self.lora) if self.lora else None)


FIXED_KIND = "general"  # the task items and loss chats that are the same in every cycle
FIXED_VERSION = 2  # bump when answers or losses are computed differently


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:32]


def _threads(threads: int | None) -> int:
    return threads or min(4, os.cpu_count() or 1)


class FixedResults:
    """One configuration's answers and losses on the general set, kept between exports.

    The file is named by the configuration's files (sha256 of the GGUF and the LoRA) and by
    what else the results depend on (context size, threads, llama.cpp's version and build, the
    CPU count), and holds ``answers`` (by the item's messages and token budget) and ``losses``
    (by the chat)."""

    def __init__(self, files: Files, *, n_ctx: int, threads: int | None) -> None:
        import llama_cpp

        self.path: Path | None = None
        self.keep = files.keep
        self.answers: dict[str, str] = {}
        self.losses: dict[str, list[float]] = {}
        self.changed = False
        if files.cache is None:
            return
        try:
            identity = [file_sha256(files.gguf), file_sha256(files.lora) if files.lora else None]
        except OSError:
            return
        from hivemind_common.llama_buffers import configure_llama

        # the weights' buffers change the kernels, so answers kept under the other setting differ
        host = [
            llama_cpp.llama_print_system_info().decode(errors="replace"),
            os.cpu_count(),
            "plain buffers" if configure_llama() else "extra buffers",
        ]
        settings = [FIXED_VERSION, n_ctx, _threads(threads), llama_cpp.__version__, host]
        self.path = files.cache / f"llama-{_digest([identity, settings])}.json"
        try:
            raw = json.loads(self.path.read_text())
            self.answers = {str(k): str(v) for k, v in raw["answers"].items()}
            self.losses = {str(k): [float(v[0]), float(v[1])] for k, v in raw["losses"].items()}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            log.warning("ignoring the kept task eval results %s: %s", self.path, exc)
            self.answers, self.losses = {}, {}

    def save(self) -> None:
        if self.path is None or not self.keep or not self.changed:
            return
        data = {"answers": self.answers, "losses": self.losses}
        keep_json(self.path.parent, self.path.name, data, what="task eval results")


class ChatModel:
    """A llama.cpp model with the GGUF's chat template (as inference renders chats)."""

    def __init__(self, files: Files, *, n_ctx: int, threads: int | None) -> None:
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        from hivemind_common.llama_buffers import configure_llama

        configure_llama()

        try:
            self.llm = llama_cpp.Llama(
                model_path=str(files.gguf),
                lora_path=str(files.lora) if files.lora else None,
                n_ctx=n_ctx,
                n_batch=min(n_ctx, 512),
                n_threads=_threads(threads),
                seed=0,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise UpstreamError(f"llama.cpp could not load {files.gguf.name}: {exc}") from exc
        self.n_ctx = n_ctx
        self._batch = _Batch(self.llm.n_batch)
        self._kv: list[int] | None = None  # what the last loss chat left in llama.cpp's cache
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
        self._kv = None  # generation reuses and overwrites the cache its own way
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
        rows = self.logits_at(ids, range(start - 1, len(ids) - 1))
        targets = np.asarray(ids[start:])
        top = rows.max(axis=-1, keepdims=True)
        log_z = np.log(np.exp(rows - top).sum(axis=-1)) + top[:, 0]
        nll = log_z - rows[np.arange(len(targets)), targets]
        return float(nll.sum()), len(targets)

    def logits_at(self, ids: list[int], positions: range) -> np.ndarray:
        """Teacher-forced logits (float64, one row per position in ``positions``, which must
        be consecutive) of the next token after each of those positions of ``ids``; llama.cpp
        computes the output layer for those positions only."""
        import llama_cpp

        ctx = self.llm.ctx
        n_vocab = self.llm.n_vocab()
        memory = llama_cpp.llama_get_memory(ctx)
        # the cache keeps the last loss chat: this one decodes from where it differs (the same
        # system prompt or question is not evaluated again), and at the latest from its first
        # wanted position, since only what is decoded gets logits
        # (not for a recurrent or hybrid model, whose state is not kept per position); with
        # n_tokens 0 the next generate() evaluates its prompt from position 0 and drops what
        # the loss chats left in the cache
        self.llm.reset()
        stateful = getattr(self.llm, "_is_recurrent", False) or getattr(
            self.llm, "_is_hybrid", False
        )
        keep = 0 if stateful else max(0, min(_prefix_len(self._kv or [], ids), positions.start))
        self._kv = None  # until this chat is in the cache
        if not (keep and llama_cpp.llama_memory_seq_rm(memory, 0, keep, -1)):
            keep = 0
            llama_cpp.llama_memory_clear(memory, True)
        out: list[np.ndarray] = []
        step = self._batch.size
        for lo in range(keep, len(ids), step):
            part = ids[lo : lo + step]
            wanted = self._batch.fill(part, lo, positions)
            if llama_cpp.llama_decode(ctx, self._batch.batch) != 0:
                raise UpstreamError("llama.cpp could not evaluate a loss chat")
            if wanted:
                logits = llama_cpp.llama_get_logits(ctx)
                flat = np.ctypeslib.as_array(logits, shape=(wanted * n_vocab,))
                out.append(flat.reshape(wanted, n_vocab).astype(np.float64))
        self._kv = list(ids)
        return np.concatenate(out) if out else np.zeros((0, n_vocab))

    def close(self) -> None:
        self.llm.close()
        self._batch.close()


class _Batch:
    """A llama.cpp batch of one sequence whose tokens ask for logits only where wanted."""

    def __init__(self, size: int) -> None:
        import llama_cpp

        self.size = size
        self.batch: Any = llama_cpp.llama_batch_init(size, 0, 1)

    def fill(self, part: list[int], first: int, positions: range) -> int:
        """``part`` at positions ``first...``; how many of them ask for logits. A part that
        wants none still asks for its last token's (llama.cpp wants at least one output)."""
        b = self.batch
        b.n_tokens = len(part)
        wanted = 0
        for i, token in enumerate(part):
            b.token[i] = token
            b.pos[i] = first + i
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = 0
            want = (first + i) in positions
            b.logits[i] = want
            wanted += want
        if not wanted:
            b.logits[len(part) - 1] = True
        return wanted

    def close(self) -> None:
        import llama_cpp

        if self.batch is not None:
            llama_cpp.llama_batch_free(self.batch)
            self.batch = None


def _prefix_len(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _common_prefix(a: list[int], b: list[int]) -> int:
    return max(_prefix_len(a, b), 1)


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
    """Answers, their scores and the answer losses of one configuration; the general set's
    figures from its kept results where they are known."""
    started = time.perf_counter()
    fixed = FixedResults(files, n_ctx=n_ctx, threads=threads)
    parts: dict[str, float] = {}
    fresh = 0  # general items and chats measured here (not kept from before)
    with _lazy_model(files, n_ctx=n_ctx, threads=threads) as model:
        answers = []
        mark = time.perf_counter()
        for it in items:
            general = it.get("kind") == FIXED_KIND
            key = _digest([it["messages"], it["reference"], max_tokens])
            if general and key in fixed.answers:
                answers.append(fixed.answers[key])
                continue
            m = model()
            answers.append(m.answer(it["messages"], _max_tokens(m, it["reference"], max_tokens)))
            if general:
                fixed.answers[key], fixed.changed = answers[-1], True
                fresh += 1
        measured: dict[str, float | None] = {}
        counted: dict[str, int] = {}
        parts["answers"], mark = time.perf_counter() - mark, time.perf_counter()
        for part in ("heldout", "general"):
            total, n = 0.0, 0
            # chats that begin alike in a row, so that each decodes only where it differs
            for chat in sorted(losses.get(part) or [], key=_opening):
                key = _digest(chat)
                known = fixed.losses.get(key) if part == FIXED_KIND else None
                if known is not None:
                    s, k = known[0], int(known[1])
                else:
                    s, k = model().answer_loss(chat)
                    if part == FIXED_KIND:
                        fixed.losses[key], fixed.changed = [s, k], True
                        fresh += 1
                total, n = total + s, n + k
            measured[part] = round(total / n, 5) if n else None
            counted[part] = n
            parts[f"{part}_losses"], mark = time.perf_counter() - mark, time.perf_counter()
    fixed.save()
    return {
        "files": {"gguf": files.gguf.name, "lora": files.lora.name if files.lora else None},
        "scores": score(items, answers),
        "losses": measured,
        "loss_tokens": counted,
        "answers": answers,
        "seconds": round(time.perf_counter() - started, 2),
        "seconds_by_part": {k: round(v, 2) for k, v in parts.items()},  # loading in the first
        "general_measured": fresh,
    }


def _opening(chat: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(str(m.get("role")), str(m.get("content"))) for m in chat]


@contextlib.contextmanager
def _lazy_model(files: Files, *, n_ctx: int, threads: int | None) -> Iterator[Any]:
    """A function that loads the model on its first call (never, when every figure is known),
    closed when the block ends."""
    loaded: list[ChatModel] = []

    def get() -> ChatModel:
        if not loaded:
            loaded.append(ChatModel(files, n_ctx=n_ctx, threads=threads))
        return loaded[0]

    try:
        yield get
    finally:
        if loaded:
            loaded[0].close()


def served_eval(
    version_dir: Path,
    candidate: Files,
    served: Files,
    base: Files,
    *,
    tolerance: float = TASK_TOLERANCE,
    n_ctx: int = 2048,
    threads: int | None = None,
    max_tokens: int = 128,
) -> dict[str, Any] | None:
    """Run both sides and the base; the report for the manifest, or None when the version has
    no eval set. ``report["passed"]`` is the task gate's decision: the candidate no worse than
    the served version, nor than the base (the anchor against a slow drift down), by more than
    ``tolerance``."""
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
    if served.key() != base.key():  # the anchor: a chain of versions cannot drift below it
        above_base, anchored = compare(
            runs["candidate"]["scores"], runs["base"]["scores"], tolerance=tolerance, against="base"
        )
        passed = passed and above_base
        reasons += anchored
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
