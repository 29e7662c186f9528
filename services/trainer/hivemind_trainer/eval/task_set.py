"""What a version is judged on through llama.cpp, written by the trainer beside the adapter.

The trainer cannot run the served artifacts (the exporter writes ``adapter.gguf``), so each
cycle leaves in ``<version>/eval/``:

- ``task.jsonl``: the task eval's items, ``{id, kind, messages, reference, check?}``: held-out
  prompts of the captured data (``heldout``), the items of a user's eval file (``file``,
  ``HIVEMIND_TASK_EVAL_FILE``: any format ``hivemind learn import`` reads, or
  ``{prompt, reference, check?}``), and prompts of the general set, unlike the training data
  (``general``: how a version does away from what it learned, reported, not gated);
- ``losses.json``: the held-out and general chats whose losses the exporter measures in
  llama.cpp on the served files (``{"heldout": [...], "general": [...], "general_set": id}``).

The exporter answers and scores them (:mod:`hivemind_common.task_eval`) for the candidate and the
served version and records both in the manifest.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from hivemind_common.errors import Unprocessable
from hivemind_common.task_eval import valid_check
from hivemind_trainer.data.importer import NotNormalisable, normalise_record, read_records

EVAL_DIR = "eval"
TASK_FILE = "task.jsonl"
LOSS_FILE = "losses.json"
Chat = list[dict[str, Any]]


def _order(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def item_of(messages: Chat, *, item_id: str, kind: str, check: Any = None) -> dict[str, Any] | None:
    """A prompt (every turn before the last answer) and its reference (the answer's text); None
    for a chat that ends in a tool call or has no user turn before its answer."""
    if len(messages) < 2 or messages[-1].get("role") != "assistant":
        return None
    reference = str(messages[-1].get("content") or "").strip()
    prompt = [dict(m) for m in messages[:-1]]
    if not reference or messages[-1].get("tool_calls") or prompt[-1].get("role") == "assistant":
        return None
    if not any(m.get("role") == "user" for m in prompt):
        return None
    item: dict[str, Any] = {"id": item_id, "kind": kind, "messages": prompt, "reference": reference}
    checked = valid_check(check)
    if checked is not None:
        item["check"] = checked
    return item


def file_items(path: Path) -> list[dict[str, Any]]:
    """The items of a user's eval file; a record that is not a chat with an answer is refused
    (the file is the user's statement of what matters: nothing of it is dropped silently)."""
    items: list[dict[str, Any]] = []
    for line, record in read_records(path):
        if isinstance(record, dict) and "prompt" in record and "reference" in record:
            messages: Chat = [
                {"role": "user", "content": str(record["prompt"])},
                {"role": "assistant", "content": str(record["reference"])},
            ]
        else:
            try:
                messages = normalise_record(record)
            except NotNormalisable as exc:
                raise Unprocessable(
                    f"task eval file {path.name}, record {line}: {exc.reason} ({exc})"
                ) from exc
        check = record.get("check") if isinstance(record, dict) else None
        if check is not None and valid_check(check) is None:
            raise Unprocessable(
                f"task eval file {path.name}, record {line}: check takes endswith, startswith, "
                "contains or regex with text values"
            )
        item = item_of(messages, item_id=f"file:{path.name}:{line}", kind="file", check=check)
        if item is None:
            raise Unprocessable(f"task eval file {path.name}, record {line}: no answer to score")
        items.append(item)
    return items


def task_items(
    heldout: list[dict[str, Any]],
    *,
    general: list[Chat],
    eval_file: Path | None = None,
    max_items: int = 24,
    general_items: int = 8,
) -> list[dict[str, Any]]:
    """Held-out items (a stable sample of at most ``max_items``), the eval file's, general ones."""
    held = [
        item
        for rec in sorted(heldout, key=lambda r: _order(str(r["id"])))
        if (item := item_of(rec["messages"], item_id=str(rec["id"]), kind="heldout"))
    ][:max_items]
    from_file = file_items(eval_file) if eval_file is not None else []
    unlike = [
        item
        for i, chat in sorted(enumerate(general), key=lambda ic: _order(f"general{ic[0]}"))
        if (item := item_of(chat, item_id=f"general:{i}", kind="general"))
    ][:general_items]
    return held + from_file + unlike


def spread(chats: list[Chat], n: int) -> list[Chat]:
    """At most ``n`` chats, evenly spread over the list (deterministic)."""
    if len(chats) <= n:
        return list(chats)
    step = len(chats) / n
    return [chats[int(i * step)] for i in range(n)]


def write_eval_set(
    out_dir: Path,
    items: list[dict[str, Any]],
    *,
    heldout_chats: list[Chat],
    general_chats: list[Chat],
    general_set: str,
    max_loss_chats: int = 96,
) -> dict[str, Any]:
    """Write ``eval/`` into a version folder; the summary the manifest records."""
    directory = out_dir / EVAL_DIR
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / TASK_FILE).open("w") as fh:
        for item in items:
            fh.write(json.dumps(item, ensure_ascii=False) + "\n")
    losses = {
        "heldout": spread(heldout_chats, max_loss_chats),
        "general": spread(general_chats, max_loss_chats),
        "general_set": general_set,
    }
    (directory / LOSS_FILE).write_text(json.dumps(losses, ensure_ascii=False))
    kinds: dict[str, int] = {}
    for item in items:
        kinds[item["kind"]] = kinds.get(item["kind"], 0) + 1
    return {
        "items": kinds,
        "loss_chats": {"heldout": len(losses["heldout"]), "general": len(losses["general"])},
        "status": "pending: measured by the exporter on the served files",
    }
