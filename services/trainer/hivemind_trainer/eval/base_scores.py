"""The base's scores on the general set, measured once per base and kept beside its weights.

Every cycle's gate compares the candidate with the base on the general set (~300 chats: the
answers' loss and accuracy, overall and by kind, and the whole replies' loss). The set is fixed
and a base cached from a GGUF never changes under its sha256 (``models/<name>/base-hf/<sha256>``),
so the base's figures are the same in every cycle that measures them the same way: the same
items, rows (``seq_len``, batch), compute dtype, device, method (QLoRA stores the base in 4 bits)
and library versions. They took ~11 s of every cycle on a 2-core CPU; now the first cycle of a
base measures them and the next ones read them from ``<base-hf>/eval-cache/<key>.json``.

A base given as the user's own Hugging Face directory is not written to and is measured in every
cycle. A cache that cannot be read or written is ignored (the figures are measured again).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# bump when the way the general scores are computed changes (hivemind_trainer.recipe.loss)
SCORES_VERSION = 1
Scores = dict[str, tuple[float, float]]


def cache_key(
    items: list[Any],
    *,
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
        "items": [[item.chat, item.answer, item.kind] for item in items],
        "seq_len": seq_len,
        "batch_size": batch_size,
        "dtype": dtype,
        "device": device,
        "method": method,
        "qlora": qlora,
        "libraries": [torch.__version__, transformers.__version__, peft.__version__],
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:32]


def load(directory: Path | None, key: str) -> Scores | None:
    """The cached scores under ``key``, or None."""
    if directory is None:
        return None
    path = directory / f"{key}.json"
    try:
        raw = json.loads(path.read_text())
        return {str(name): (float(pair[0]), float(pair[1])) for name, pair in raw.items()}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, IndexError, AttributeError) as exc:
        log.warning("ignoring the base's cached general scores %s: %s", path, exc)
        return None


def store(directory: Path | None, key: str, scores: Scores) -> None:
    """Keep ``scores`` under ``key`` (atomically; a failure only logs)."""
    if directory is None:
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".scores-", suffix=".json")
        with os.fdopen(fd, "w") as fh:
            json.dump({name: list(pair) for name, pair in scores.items()}, fh)
        os.replace(tmp, directory / f"{key}.json")
    except OSError as exc:
        log.warning("could not keep the base's general scores in %s: %s", directory, exc)
