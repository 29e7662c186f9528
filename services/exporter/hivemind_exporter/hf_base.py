"""A Hugging Face directory base as a GGUF we write ourselves (f16, with its tokenizer).

A version whose base is a Hugging Face folder (``config.json``, weights, ``tokenizer.json``) has
no GGUF to copy a tokenizer from or to serve beside an adapter. The exporter writes one: the
folder's weights in f16 (``gguf_write.model_tensors``, the same layout as every export) and its
byte-level BPE tokenizer as llama.cpp's ``gpt2`` model (tokens, token types, merges, special ids,
the chat template). It is cached by the folder's content in
``$DATA_DIR/models/<name>/base-f16/hf-<sha256>.gguf``; the export then treats it as an
unquantized GGUF base: merged f16 written, quantized with ``llama_model_quantize``, served.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gguf

from hivemind_common.errors import Unprocessable
from hivemind_exporter.gguf_layout import ArchParams
from hivemind_exporter.gguf_write import _finish, _header, model_tensors

log = logging.getLogger(__name__)

HF_BASE_PREFIX = "hf-"
_CONTENT_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
_WEIGHT_SUFFIXES = (".safetensors", ".bin")

# llama.cpp's pre-tokenizer names for the Split regexes of tokenizer.json (as convert_hf_to_gguf
# names them), keyed by the regex
_LLAMA3_REGEX = (
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
)
_QWEN2_REGEX = (
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
)
_SPLIT_PRE = {_LLAMA3_REGEX: "llama-bpe", _QWEN2_REGEX: "qwen2"}


def content_digest(hf_dir: Path) -> str:
    """sha256 over the folder's config, tokenizer and weight files (names and bytes)."""
    h = hashlib.sha256()
    names = sorted(
        p.name
        for p in hf_dir.iterdir()
        if p.is_file() and (p.name in _CONTENT_FILES or p.name.endswith(_WEIGHT_SUFFIXES))
    )
    for name in names:
        h.update(name.encode() + b"\0")
        with open(hf_dir / name, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def pre_tokenizer_name(tokenizer_json: dict[str, Any]) -> str:
    """llama.cpp's ``tokenizer.ggml.pre`` for a byte-level BPE ``tokenizer.json``."""
    pre = tokenizer_json.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") for s in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    digits = kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits")
    if digits and steps[1].get("use_regex", True):
        return "smollm"  # GPT-2's split after one digit per piece
    if kinds and kinds[0] == "Split" and kinds[-1] == "ByteLevel":
        regex = (steps[0].get("pattern") or {}).get("Regex")
        if regex in _SPLIT_PRE and not steps[-1].get("use_regex", True):
            return _SPLIT_PRE[regex]
    raise Unprocessable(
        f"the base's pre-tokenizer ({json.dumps(pre)[:200]}) is not one llama.cpp names here "
        "(gpt-2, smollm, llama-bpe, qwen2); export from a GGUF base instead"
    )


def _vocab(hf_dir: Path, vocab_size: int) -> tuple[list[str], list[int], str]:
    """Tokens by id, their llama.cpp types and the pre-tokenizer name, from tokenizer.json."""
    path = hf_dir / "tokenizer.json"
    if not path.is_file():
        raise Unprocessable(f"the base folder {hf_dir} has no tokenizer.json (a fast tokenizer)")
    data = json.loads(path.read_text(encoding="utf-8"))
    model = data.get("model") or {}
    if (
        model.get("type") != "BPE"
        or model.get("byte_fallback")
        or ((data.get("decoder") or {}).get("type") != "ByteLevel")
    ):
        raise Unprocessable(
            "only byte-level BPE tokenizers (GPT-2, Llama 3, Qwen2, SmolLM) are exported from a "
            "Hugging Face folder; export from a GGUF base for others"
        )
    by_id: dict[int, str] = {int(i): str(t) for t, i in model["vocab"].items()}
    types: dict[int, int] = {}
    for added in data.get("added_tokens") or []:
        tid = int(added["id"])
        by_id[tid] = str(added["content"])
        kind = gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED
        types[tid] = int(kind)
    size = max(vocab_size, max(by_id) + 1)
    if size != vocab_size:
        raise Unprocessable(f"the tokenizer has {size} tokens but the model {vocab_size}")
    tokens = [by_id.get(i, f"[PAD{i}]") for i in range(size)]
    token_types = [
        types.get(i, int(gguf.TokenType.NORMAL if i in by_id else gguf.TokenType.UNUSED))
        for i in range(size)
    ]
    return tokens, token_types, pre_tokenizer_name(data)


def write_hf_base_gguf(
    hf_dir: Path,
    state: Mapping[str, Any],
    params: ArchParams,
    out: Path,
    *,
    name: str = "hivemind-base",
) -> Path:
    """Write the folder's model (``state``: its state dict) as an f16 GGUF with its tokenizer."""
    tokens, token_types, pre = _vocab(hf_dir, params.vocab_size)
    special = gguf.SpecialVocab(hf_dir, load_merges=True, n_vocab=len(tokens))
    if not special.merges:
        raise Unprocessable(f"the tokenizer of {hf_dir} has no BPE merges")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        writer = gguf.GGUFWriter(str(tmp), params.arch)
        _header(writer, params, name)
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(pre)
        writer.add_token_list(tokens)
        writer.add_token_types(token_types)
        special.add_to_gguf(writer, quiet=True)
        for tensor_name, array in model_tensors(state, params):
            writer.add_tensor(tensor_name, array)
        _finish(writer, tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)  # a failed write leaves no temp file
    return out


def ensure_hf_base_gguf(
    hf_dir: Path, cache_dir: Path, state: Mapping[str, Any], params: ArchParams, *, name: str
) -> Path:
    """The cached f16 GGUF of a Hugging Face base folder, written once per content."""
    out = cache_dir / f"{HF_BASE_PREFIX}{content_digest(hf_dir)}.gguf"
    if not out.is_file():
        log.info("writing the f16 GGUF of a Hugging Face base", extra={"gguf": str(out)})
        write_hf_base_gguf(hf_dir, state, params, out, name=name)
    return out
