"""Find and load the base a version was trained on, and its PEFT adapter.

A version's ``manifest.json`` names its base as a GGUF path, a Hugging Face directory, or a dict
with ``gguf`` and/or ``hf_dir``. A GGUF base is dequantized by transformers (``gguf_file=``) once
and cached as a Hugging Face checkpoint in ``$DATA_DIR/models/<name>/base-hf/<sha256>/``.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hivemind_common.base_cache import ensure_base_hf
from hivemind_common.errors import NotFound, Unprocessable
from hivemind_common.models_paths import default_llm_gguf

log = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


@dataclass(frozen=True)
class BaseSpec:
    """Where a version's base lives: a GGUF (tokenizer source, served file) and/or a HF dir."""

    gguf: Path | None
    hf_dir: Path | None


def _as_path(value: Any) -> Path | None:
    return Path(value) if isinstance(value, str) and value else None


def resolve_base(manifest: dict[str, Any]) -> BaseSpec:
    """The base named by a manifest; the shipped SmolLM2 GGUF when it names none."""
    base = manifest.get("base")
    gguf: Path | None = _as_path(manifest.get("base_gguf"))
    hf_dir: Path | None = _as_path(manifest.get("base_hf_dir"))
    if isinstance(base, dict):
        gguf = gguf or _as_path(base.get("gguf") or base.get("gguf_path"))
        hf_dir = hf_dir or _as_path(base.get("hf_dir") or base.get("hf_path"))
    elif isinstance(base, str) and base:
        if base.endswith(".gguf"):
            gguf = gguf or Path(base)
        elif Path(base).is_dir():
            hf_dir = hf_dir or Path(base)
    if gguf is None and hf_dir is None:
        gguf = default_llm_gguf()
    if gguf is not None and not gguf.is_file():
        raise NotFound(f"base GGUF {gguf} does not exist")
    if hf_dir is not None and not (hf_dir / "config.json").is_file():
        hf_dir = None if gguf is not None else hf_dir
        if hf_dir is not None:
            raise NotFound(f"base Hugging Face directory {hf_dir} has no config.json")
    return BaseSpec(gguf=gguf, hf_dir=hf_dir)


def load_base_model(spec: BaseSpec, model_dir: Path) -> Any:
    """The base as a float32 transformers model (a GGUF base dequantized once, then cached).

    ``model_dir`` is the model's folder; the cache is keyed by the GGUF's sha256
    (:mod:`hivemind_common.base_cache`, shared with the trainer).
    """
    from transformers import AutoModelForCausalLM

    if spec.hf_dir is not None:
        source = spec.hf_dir
    else:
        assert spec.gguf is not None
        source = ensure_base_hf(spec.gguf, model_dir, tokenizer=False)
    model = AutoModelForCausalLM.from_pretrained(str(source), dtype="float32")
    model.eval()
    return model


def find_adapter_dir(version_dir: Path, manifest: dict[str, Any]) -> Path:
    """The PEFT adapter folder of a version (``adapter/`` or the version folder itself)."""
    candidates = []
    if isinstance(manifest.get("adapter_dir"), str):
        named = Path(manifest["adapter_dir"])
        candidates.append(named if named.is_absolute() else version_dir / named)
    candidates += [version_dir / "adapter", version_dir]
    for candidate in candidates:
        if (candidate / ADAPTER_CONFIG).is_file():
            return candidate
    raise NotFound(f"no PEFT adapter ({ADAPTER_CONFIG}) in {version_dir}")


def load_adapter(adapter_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(adapter_config, lora state dict)`` of a PEFT LoRA folder."""
    config = json.loads((adapter_dir / ADAPTER_CONFIG).read_text())
    if config.get("peft_type", "LORA") != "LORA":
        raise Unprocessable(f"adapter type {config.get('peft_type')!r} is not LoRA")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise Unprocessable("per-module LoRA ranks or alphas are not exportable")
    for name in ADAPTER_WEIGHTS:
        path = adapter_dir / name
        if path.is_file():
            if name.endswith(".safetensors"):
                from safetensors.torch import load_file

                return config, dict(load_file(str(path)))
            import torch

            return config, dict(torch.load(str(path), map_location="cpu", weights_only=True))
    raise NotFound(f"no adapter weights in {adapter_dir}")


_LORA_KEY = re.compile(r"^(?:base_model\.model\.)?(.+)\.lora_([AB])(?:\.[^.]+)?\.weight$")


def peft_scale(config: dict[str, Any]) -> float:
    """PEFT's multiplier of ``B @ A``: alpha / r (alpha / sqrt(r) with rsLoRA)."""
    rank = float(config["r"])
    alpha = float(config.get("lora_alpha", rank))
    return alpha / (rank**0.5 if config.get("use_rslora") else rank)


def merge_lora(model: Any, config: dict[str, Any], lora_state: dict[str, Any]) -> int:
    """Add ``scale * B @ A`` to each targeted weight of ``model`` in place; returns the count.

    The same arithmetic as PEFT's merge, without wrapping the model first.
    """
    import torch

    pairs: dict[str, dict[str, Any]] = {}
    for key, tensor in lora_state.items():
        match = _LORA_KEY.match(key)
        if not match:
            raise Unprocessable(f"unexpected adapter tensor {key!r}")
        pairs.setdefault(match.group(1), {})[match.group(2)] = tensor
    scale = peft_scale(config)
    with torch.no_grad():
        for module, pair in pairs.items():
            if set(pair) != {"A", "B"}:
                raise Unprocessable(f"adapter tensor pair of {module} is incomplete")
            weight = model.get_parameter(f"{module}.weight")
            delta = pair["B"].to(torch.float32) @ pair["A"].to(torch.float32)
            if config.get("fan_in_fan_out"):
                delta = delta.T
            weight.add_(delta.to(weight.dtype), alpha=scale)
    return len(pairs)


def gguf_alpha(config: dict[str, Any]) -> float:
    """The alpha llama.cpp needs so that alpha / rank equals PEFT's scale."""
    rank = float(config["r"])
    alpha = float(config.get("lora_alpha", rank))
    if config.get("use_rslora"):
        return alpha * rank**0.5  # PEFT scales by alpha / sqrt(r)
    return alpha
