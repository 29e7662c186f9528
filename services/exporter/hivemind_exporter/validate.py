"""Check an export against the PyTorch model it came from.

llama.cpp loads the file; on fixed teacher-forced prompts the next-token argmax at every
position must agree with PyTorch's (the share is the *top-1 agreement*); a greedy chat must end
with its stop token rather than run to the token limit.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hivemind_common.errors import UpstreamError

log = logging.getLogger(__name__)

MIN_AGREEMENT = 0.98
# A position where PyTorch's own top two logits are this close is a near-tie. The gate counts raw
# agreement; the share with near-ties counted as agreeing is recorded beside it, because a
# quantized GGUF's arithmetic (Q4_1 weights, 8-bit activations) moves logits by up to ~1.6
# against PyTorch with no adapter at all, which is the base's rounding, not an export error.
TIE_TOLERANCE = 0.25

# Fixed prompts: code, prose and chat-shaped text, so every export is checked on the same input
# (about 400 teacher-forced positions with SmolLM2's tokenizer: one miss is a quarter percent).
PROBE_TEXTS: tuple[str, ...] = (
    "def fibonacci(n):\n    if n < 2:\n        return n\n"
    "    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "The quick brown fox jumps over the lazy dog. "
    "Redis streams keep jobs until they are acknowledged.",
    "<|im_start|>user\nWhat is a LoRA adapter?<|im_end|>\n"
    "<|im_start|>assistant\nA LoRA adapter is a small",
    "import json\n\nwith open('config.json') as fh:\n"
    "    config = json.load(fh)\nprint(config['name'])",
    "<|im_start|>user\nHow do I reverse a list in Python?<|im_end|>\n<|im_start|>assistant\n"
    "Use slicing: `items[::-1]` returns a reversed copy, and `items.reverse()` reverses "
    "the list in place.<|im_end|>\n",
    "SELECT name, COUNT(*) AS n FROM orders WHERE created_at > '2024-01-01' "
    "GROUP BY name ORDER BY n DESC LIMIT 10;",
    "<|im_start|>system\nYou are a concise coding assistant.<|im_end|>\n<|im_start|>user\n"
    "Why does my Rust code say the value was moved?<|im_end|>\n<|im_start|>assistant\n"
    "Because ownership passed to the function you called. Borrow it with `&value` instead, "
    "or clone it if the function must own a copy.<|im_end|>\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n"
    "    def push(self, item):\n        self.items.append(item)\n\n"
    "    def pop(self):\n        return self.items.pop()\n",
    "To install the package, create a virtual environment first, activate it, and then run "
    "pip install with the name of the package. Upgrading later works the same way.",
    "fn main() {\n    let numbers = vec![3, 1, 4, 1, 5, 9];\n"
    '    let total: i32 = numbers.iter().sum();\n    println!("{}", total);\n}\n',
    '{"name": "hivemind", "version": "1.2.0", "dependencies": {"redis": "^5.0", '
    '"fastapi": "^0.110"}, "scripts": {"test": "pytest -q"}}',
    "#!/bin/bash\nset -euo pipefail\nfor file in *.log; do\n"
    '    gzip -9 "$file"\ndone\necho "compressed $(ls *.gz | wc -l) files"\n',
)


@dataclass
class AgreementResult:
    """How often llama.cpp's next-token argmax matched PyTorch's (raw, and counting ties)."""

    agreement: float
    positions: int
    max_abs_logit_diff: float
    tie_aware: float = 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "top1_agreement": round(self.agreement, 4),
            "top1_agreement_ties_ok": round(self.tie_aware, 4),
            "positions": self.positions,
            "max_abs_logit_diff": round(self.max_abs_logit_diff, 4),
        }


@contextlib.contextmanager
def open_llama(gguf: Path, *, lora: Path | None = None, n_ctx: int = 512) -> Iterator[Any]:
    """A llama.cpp model with logits for every position; closed when the block ends."""
    import llama_cpp

    from hivemind_common.llama_buffers import configure_llama

    configure_llama()

    try:
        llm = llama_cpp.Llama(
            model_path=str(gguf),
            lora_path=str(lora) if lora else None,
            n_ctx=n_ctx,
            n_batch=n_ctx,
            logits_all=True,
            n_threads=min(4, os.cpu_count() or 1),
            seed=0,
            verbose=False,
        )
    except (ValueError, RuntimeError) as exc:
        raise UpstreamError(f"llama.cpp could not load {gguf.name}: {exc}") from exc
    try:
        yield llm
    finally:
        llm.close()


def llama_logits(llm: Any, tokens: Sequence[int]) -> np.ndarray:
    """llama.cpp logits for each position of ``tokens`` (teacher-forced), shape (n, vocab)."""
    llm.reset()
    llm.eval(list(tokens))
    return np.array(llm.scores[: len(tokens)], dtype=np.float32)


def torch_logits(model: Any, tokens: Sequence[int]) -> np.ndarray:
    """PyTorch logits for each position of ``tokens``, float32."""
    import torch

    with torch.inference_mode():
        ids = torch.tensor([list(tokens)], dtype=torch.long)
        out = model(input_ids=ids).logits[0]
    return out.float().cpu().numpy()


class ReferenceLogits:
    """PyTorch logits of a model, computed once per token list (several exports share them)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self._cache: dict[tuple[int, ...], np.ndarray] = {}

    def __call__(self, tokens: Sequence[int]) -> np.ndarray:
        key = tuple(tokens)
        if key not in self._cache:
            self._cache[key] = torch_logits(self.model, tokens)
        return self._cache[key]


def probe_tokens(
    llm: Any, texts: Sequence[str] = PROBE_TEXTS, max_len: int = 96
) -> list[list[int]]:
    """The probe texts tokenised by the GGUF's own tokenizer (special tokens parsed)."""
    out = []
    for text in texts:
        ids = llm.tokenize(text.encode(), add_bos=False, special=True)[:max_len]
        if len(ids) >= 2:
            out.append(ids)
    return out


def top1_agreement(
    model: Any | ReferenceLogits,
    gguf: Path,
    *,
    lora: Path | None = None,
    token_lists: Sequence[Sequence[int]] | None = None,
) -> AgreementResult:
    """Share of teacher-forced positions where llama.cpp and PyTorch pick the same next token."""
    reference = model if isinstance(model, ReferenceLogits) else ReferenceLogits(model)
    with open_llama(gguf, lora=lora) as llm:
        prompts = list(token_lists) if token_lists is not None else probe_tokens(llm)
        agree = tied = total = 0
        max_diff = 0.0
        for tokens in prompts:
            ours = llama_logits(llm, tokens)
            ref = reference(tokens)
            picks = ours.argmax(-1)
            agree += int((picks == ref.argmax(-1)).sum())
            # PyTorch's logit of llama.cpp's pick, against PyTorch's best
            gap = ref.max(-1) - ref[np.arange(len(tokens)), picks]
            tied += int((gap <= TIE_TOLERANCE).sum())
            total += len(tokens)
            max_diff = max(max_diff, float(np.abs(ours - ref).max()))
    n = max(total, 1)
    result = AgreementResult(agree / n, total, max_diff, tie_aware=tied / n)
    log.info("export agreement", extra={"gguf": gguf.name, **result.as_dict()})
    return result


def chat_ends_with_stop(
    gguf: Path, *, lora: Path | None = None, max_tokens: int = 96
) -> dict[str, Any]:
    """Greedy chat on a fixed question: did it finish with the stop token (not the limit)?"""
    with open_llama(gguf, lora=lora, n_ctx=1024) as llm:
        reply = llm.create_chat_completion(
            messages=[{"role": "user", "content": "Say hello in one short sentence."}],
            max_tokens=max_tokens,
            temperature=0.0,
        )
    choice = reply["choices"][0]
    return {
        "finish_reason": choice.get("finish_reason"),
        "stopped": choice.get("finish_reason") == "stop",
        "completion_tokens": reply.get("usage", {}).get("completion_tokens"),
    }
