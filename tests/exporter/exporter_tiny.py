"""Helpers: tiny llama / qwen2 models (2 layers, hidden 64) with SmolLM2's vocabulary.

The vocabulary size matches the shipped SmolLM2 GGUF (49152) so its ``tokenizer.*`` keys can be
copied into the tiny exports and llama.cpp loads them like any other model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VOCAB = 49152
INIT_RANGE = 0.1  # wide enough that the rotary permutation of Q/K visibly matters


@dataclass
class TinyModel:
    arch: str
    model: Any
    hf_dir: Path
    base_gguf: Path


def build_tiny(arch: str, seed: int = 0) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    kw = dict(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        initializer_range=INIT_RANGE,
        rms_norm_eps=1e-5,
        bos_token_id=1,
        eos_token_id=2,
    )
    if arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(**kw))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(**kw))
        with torch.no_grad():  # HF starts biases at zero; random ones test their export
            for layer in model.model.layers:
                for proj in (
                    layer.self_attn.q_proj,
                    layer.self_attn.k_proj,
                    layer.self_attn.v_proj,
                ):
                    proj.bias.normal_(0, 0.3)
    return model.eval()


def make_adapter(tiny: TinyModel, out_dir: Path, *, seed: int = 1, rank: int = 8) -> Any:
    """A PEFT LoRA with random (non-zero) A and B on every projection, saved in ``out_dir``."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(tiny.hf_dir), dtype="float32")
    config = LoraConfig(
        r=rank,
        lora_alpha=16,
        target_modules=[
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ],
        init_lora_weights=False,
        lora_dropout=0.0,
    )
    torch.manual_seed(seed)
    peft_model = get_peft_model(base, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.normal_(0, 0.2)
    peft_model.save_pretrained(str(out_dir))
    return peft_model


def write_version(registry: Any, tiny: TinyModel, version: str, **manifest: Any) -> Path:
    """A trained version folder as the trainer leaves it: adapter/ + manifest.json."""
    directory = registry.version_dir("default", version)
    make_adapter(tiny, directory / "adapter")
    registry.write_manifest(
        "default",
        version,
        {"base": {"gguf": str(tiny.base_gguf), "hf_dir": str(tiny.hf_dir)}, **manifest},
    )
    (directory / "notes.json").write_text(json.dumps({"tiny": tiny.arch}))
    return directory
