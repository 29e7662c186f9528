"""Tiny models and a tiny ChatML tokenizer built in the test process (fixed seeds, no downloads)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHATML = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

CORPUS = [
    "You are a helpful assistant. system user assistant",
    "How do I reverse a list in Python? Use reversed() or slicing with [::-1].",
    "What is the capital of France? Paris is the capital of France.",
    "Write a function that adds two numbers. def add(a, b): return a + b",
    "Explain recursion briefly. A function that calls itself on a smaller input.",
    "the quick brown fox jumps over the lazy dog 0123456789",
]


def tiny_tokenizer() -> Any:
    """A byte-level BPE (vocab ≈ 400) with ChatML special tokens and template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 20, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
    )
    fast.chat_template = CHATML
    return fast


def tiny_model(arch: str, vocab: int, seed: int = 0) -> Any:
    """A 2-layer, hidden-64 llama or qwen2 causal LM."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    torch.manual_seed(seed)
    common: dict[str, Any] = dict(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        eos_token_id=2,
        pad_token_id=0,
        bos_token_id=None,
    )
    config = LlamaConfig(**common) if arch == "llama" else Qwen2Config(**common)
    config._attn_implementation = "sdpa"
    return AutoModelForCausalLM.from_config(config)


def save_tiny(directory: Path, arch: str = "llama", seed: int = 0) -> Path:
    """Write a tiny model and its tokenizer as a Hugging Face directory."""
    tok = tiny_tokenizer()
    model = tiny_model(arch, len(tok), seed)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


def chats(n: int, offset: int = 0) -> list[list[dict[str, str]]]:
    """Short varied chats, some with two assistant turns."""
    out = []
    for i in range(offset, offset + n):
        conv = [
            {"role": "user", "content": f"What is {i} plus {i + 1}?"},
            {"role": "assistant", "content": f"{i} plus {i + 1} is {2 * i + 1}."},
        ]
        if i % 3 == 0:
            conv = [{"role": "system", "content": "Answer with arithmetic only."}, *conv]
            conv += [
                {"role": "user", "content": "And doubled?"},
                {"role": "assistant", "content": f"Doubled it is {4 * i + 2}."},
            ]
        out.append(conv)
    return out


def save_pretrained_tiny(directory: Path, steps: int = 40) -> Path:
    """A tiny llama first trained (all weights) on arithmetic chats: it has something to lose."""
    import torch

    from hivemind_trainer.recipe.chat_format import encode_chat
    from hivemind_trainer.recipe.loss import packed_loss_sum
    from hivemind_trainer.recipe.packing import pack

    tok = tiny_tokenizer()
    model = tiny_model("llama", len(tok), seed=1)
    batch = pack([encode_chat(tok, c) for c in chats(12, offset=100)], 512, tok.pad_token_id)
    batch.labels = torch.where(batch.segment_ids >= 0, batch.input_ids, batch.labels)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        loss_sum, n = packed_loss_sum(model, batch, device="cpu", dtype=None)
        (loss_sum / n).backward()
        opt.step()
        opt.zero_grad()
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory
