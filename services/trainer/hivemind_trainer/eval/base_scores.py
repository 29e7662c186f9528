"""The base's scores on the general set, measured once per base and kept beside its weights.

Every cycle's gate compares the candidate with the base on the general set (~300 chats: the
answers' loss and accuracy, overall and by kind, and the whole replies' loss). The set is fixed
and a base cached from a GGUF never changes under its sha256 (``models/<name>/base-hf/<sha256>``),
so the base's figures are the same in every cycle that measures them the same way: the same
base, items, rows (``seq_len``, batch), end-of-turn token, compute dtype, device and host (the
CPU's vector capability or the GPU's name), method (QLoRA stores the base in 4 bits) and library
versions, all in the key. They took ~11 s of every cycle on a 2-core CPU; now the first cycle of
a base measures them and the next ones read them from ``<base-hf>/eval-cache/<key>.json``. A
candidate's figures are kept in its version's ``eval-cache/`` under the same kind of key, and the
next cycle reads them as the served adapter's (the base in the key: an adapter continued on
another base is measured again).

A base given as the user's own Hugging Face directory can change in place and has no identity
here: nothing is cached for it, and its models are measured in every cycle. A cache that cannot
be read or written is ignored (the figures are measured again).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from hivemind_common.files import keep_json

log = logging.getLogger(__name__)

# bump when the way the general scores are computed changes (hivemind_trainer.recipe.loss)
SCORES_VERSION = 2
Scores = dict[str, tuple[float, float]]


def cache_key(
    items: list[Any],
    *,
    base: str,
    end_token: str | None,
    seq_len: int,
    batch_size: int,
    dtype: str,
    device: str,
    method: str,
    qlora: bool,
) -> str:
    """A digest of everything the base's general scores depend on."""
    import peft
    import torch
    import transformers

    content = {
        "v": SCORES_VERSION,
        "base": base,
        "items": [[item.chat, item.answer, item.kind] for item in items],
        "end_token": end_token,
        "seq_len": seq_len,
        "batch_size": batch_size,
        "dtype": dtype,
        "device": device,
        "method": method,
        "qlora": qlora,
        "host": _host(device),
        "libraries": [torch.__version__, transformers.__version__, peft.__version__],
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:32]


def _host(device: str) -> str:
    """What the numbers depend on in the machine: the GPU's name, or the CPU's vector unit."""
    import torch

    if device != "cpu" and torch.cuda.is_available():
        return f"{device}:{torch.cuda.get_device_name(0)}"
    return f"cpu:{torch.backends.cpu.get_cpu_capability()}"


REQUIRED = ("answers", "replies")  # what the gate reads; a file without them is not used


def load(directory: Path | None, key: str) -> Scores | None:
    """The cached scores under ``key``, or None."""
    if directory is None:
        return None
    path = directory / f"{key}.json"
    try:
        raw = json.loads(path.read_text())
        scores = {str(name): (float(pair[0]), float(pair[1])) for name, pair in raw.items()}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, IndexError, AttributeError) as exc:
        log.warning("ignoring the cached general scores %s: %s", path, exc)
        return None
    if not all(name in scores for name in REQUIRED):
        log.warning("ignoring the cached general scores %s: incomplete", path)
        return None
    return scores


def store(directory: Path | None, key: str, scores: Scores) -> None:
    """Keep ``scores`` under ``key`` (atomically; a failure only logs)."""
    if directory is None:
        return
    data = {name: list(pair) for name, pair in scores.items()}
    keep_json(directory, f"{key}.json", data, what="general scores")
