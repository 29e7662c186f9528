"""The one owner of the base-model cache: a GGUF base dequantized into a Hugging Face directory.

transformers dequantizes a GGUF on load (slow: ~17 s for SmolLM2-135M here, minutes for 7B), so
the trainer and the exporter share one cached copy per base, in
``$HIVEMIND_DATA_DIR/models/<name>/base-hf/<sha256 of the GGUF, 16 hex>/``. The key is what the
base *is*, not where it lives: pointing ``BASE_GGUF`` at another file (or replacing the file in
place) gives another directory, never the stale weights of the old one. A file's sha256 is kept
beside the cache with its size and mtime, so a multi-GB GGUF is hashed once, not every cycle.

Nothing heavy at import time: transformers and torch are imported when a cache is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from hivemind_common.errors import NotFound, Unavailable
from hivemind_common.model_registry import sha256_file

log = logging.getLogger(__name__)

BASE_CACHE = "base-hf"
DIGESTS = "digests.json"  # {path: {size, mtime_ns, sha256}}
SOURCE = "source.json"  # in each cache: the GGUF it was made from and its sha256


def gguf_sha256(gguf: Path, cache_root: Path) -> str:
    """sha256 of ``gguf``, hashed again only when its size or mtime changed."""
    st = gguf.stat()
    index_path = cache_root / DIGESTS
    try:
        index: dict[str, Any] = json.loads(index_path.read_text())
    except (OSError, ValueError):
        index = {}
    seen = index.get(str(gguf))
    if seen and seen.get("size") == st.st_size and seen.get("mtime_ns") == st.st_mtime_ns:
        return str(seen["sha256"])
    digest = sha256_file(gguf)
    index[str(gguf)] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
    cache_root.mkdir(parents=True, exist_ok=True)
    tmp = index_path.with_name(f".{DIGESTS}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(index, indent=2, sort_keys=True))
    os.replace(tmp, index_path)
    return digest


def cache_dir_for(gguf: Path, model_dir: Path) -> Path:
    """Where the dequantized copy of ``gguf`` lives for the model in ``model_dir``."""
    cache_root = model_dir / BASE_CACHE
    return cache_root / gguf_sha256(gguf, cache_root)[:16]


def ensure_base_hf(gguf: Path, model_dir: Path, *, tokenizer: bool = True) -> Path:
    """The cached Hugging Face copy of ``gguf`` (written once, atomically); its directory."""
    if not gguf.is_file():
        raise NotFound(f"base GGUF {gguf} does not exist")
    _drop_legacy_cache(model_dir / BASE_CACHE)
    target = cache_dir_for(gguf, model_dir)
    if not (target / "config.json").is_file():
        _write_cache(gguf, target)
    if tokenizer and not (target / "tokenizer_config.json").is_file():
        _write_tokenizer(gguf, target)
    return target


def _write_cache(gguf: Path, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    log.info("dequantizing %s into %s (once per base)", gguf.name, target)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        try:
            model = AutoModelForCausalLM.from_pretrained(
                str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
            )
        except (OSError, ValueError, RuntimeError) as exc:
            raise Unavailable(f"cannot load base model {gguf.name}: {exc}") from exc
        # a model loaded from GGUF carries a quantization config that save_pretrained refuses
        for attr in ("quantization_config", "_pre_quantization_dtype"):
            if hasattr(model.config, attr):
                delattr(model.config, attr)
        model.hf_quantizer = None  # type: ignore[assignment]
        model.config.base_gguf = str(gguf)
        model.save_pretrained(str(tmp))
        digest = target.name
        (tmp / SOURCE).write_text(json.dumps({"gguf": str(gguf), "sha256_16": digest}))
        with contextlib.suppress(OSError):  # another process (trainer, exporter) was first
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # never leave a half-written copy behind


def _write_tokenizer(gguf: Path, target: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tmp = target.with_name(f".{target.name}.tok.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tok.save_pretrained(str(tmp))
        for item in tmp.iterdir():
            os.replace(item, target / item.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _drop_legacy_cache(cache_root: Path) -> None:
    """The unkeyed cache of earlier releases (weights of whichever base came first): removed."""
    if not (cache_root / "config.json").is_file():
        return
    log.warning("removing the unkeyed base cache in %s (its base is unknown)", cache_root)
    for item in cache_root.iterdir():
        if item.is_file() and item.name != DIGESTS:
            item.unlink(missing_ok=True)


def tokenizer_fingerprint(hf_dir: Path) -> dict[str, str | None]:
    """sha256 of the tokenizer's vocabulary/merges and of its chat template (None: absent)."""
    vocab = hashlib.sha256()
    found = False
    for name in ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer.model"):
        path = hf_dir / name
        if path.is_file():
            vocab.update(name.encode() + b"\0" + path.read_bytes())
            found = True
    template: str | None = None
    config_path = hf_dir / "tokenizer_config.json"
    if config_path.is_file():
        template = json.loads(config_path.read_text()).get("chat_template")
    jinja = hf_dir / "chat_template.jinja"
    if template is None and jinja.is_file():
        template = jinja.read_text()
    return {
        "tokenizer_sha256": vocab.hexdigest() if found else None,
        "chat_template_sha256": hashlib.sha256(template.encode()).hexdigest() if template else None,
    }


def tokenizer_mismatch(made_on: dict[str, Any], now: dict[str, str | None]) -> list[str]:
    """What differs between the fingerprint an adapter was made on and the current base's."""
    out = []
    for key, label in (("tokenizer_sha256", "tokenizer"), ("chat_template_sha256", "template")):
        before, after = made_on.get(key), now.get(key)
        if before and after and before != after:
            out.append(f"{label} {before[:12]} -> {after[:12]}")
    return out


__all__ = [
    "BASE_CACHE",
    "cache_dir_for",
    "ensure_base_hf",
    "gguf_sha256",
    "tokenizer_fingerprint",
    "tokenizer_mismatch",
]
