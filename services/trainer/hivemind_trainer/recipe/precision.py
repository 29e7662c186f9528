"""How the recipe's forward runs: attention per packed chat, and bf16 that keeps LoRA's update.

Attention. A packed row holds several chats; a block-diagonal mask keeps them apart, but SDPA
still computes the whole row × row product under it (on CPU, 30% of a SmolLM2 step with 512-token
rows of ~90-token chats). Inside :func:`recipe_forward` the model's attention runs chat by chat
instead: causal SDPA on each chat's span of the row (``segments``, the span boundaries of each
row), which is exact and does ~1/10 of the work. Without ``segments`` it falls back to SDPA with
the mask it is given.

Precision. A LoRA changes a projection's output by about a thousandth early in training. Under
plain bf16 autocast that change is added to the frozen projection's output in bf16 and then
enters attention in bf16, whose 8-bit mantissa rounds much of it away: on SmolLM2 with an 8-step
adapter the bf16 forward read the loss 0.014 higher than float32 on every batch (sd 0.004), and
training steered by that forward ended slightly worse than the same steps in float32. So under a
low-precision ``dtype`` the frozen base projections (most of the arithmetic) still run in bf16,
while every LoRA branch, its sum with the frozen output and the attention run in float32 (the
loss computes the LM head in float32 too); the bf16 forward then reads the loss within ±0.002 of
float32, with no bias.
"""

from __future__ import annotations

import itertools
import types
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from peft.tuners.lora.layer import Linear as LoraLinear
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

PACKED = "hivemind_packed"
PACKED_FLOAT32 = "hivemind_packed_float32"

Segments = Sequence[Sequence[int]]  # per row: chat boundaries 0 = b0 < b1 < ... < bn = row length


def segments_of(segment_ids: torch.Tensor) -> tuple[tuple[int, ...], ...]:
    """Chat boundaries of each row of a packed batch (the padding tail is a span of its own)."""
    out = []
    for row in segment_ids.tolist():
        bounds = [0] + [i for i in range(1, len(row)) if row[i] != row[i - 1]] + [len(row)]
        out.append(tuple(bounds))
    return tuple(out)


def _packed_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    *,
    float32: bool,
    dropout: float = 0.0,
    scaling: float | None = None,
    segments: Segments | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    autocast = torch.autocast(query.device.type, enabled=False) if float32 else nullcontext()
    with autocast:
        if float32:
            query, key, value = query.float(), key.float(), value.float()
        if segments is None:
            return sdpa_attention_forward(  # type: ignore[no-any-return]
                module, query, key, value, attention_mask, dropout, scaling, **kwargs
            )
        groups = query.shape[1] // key.shape[1]
        if groups > 1:  # grouped-query attention: each KV head serves `groups` query heads
            key = key.repeat_interleave(groups, dim=1)
            value = value.repeat_interleave(groups, dim=1)
        rows = []
        # unbind + split (not slicing): their backward concatenates the gradients, where a
        # slice's backward fills a zero tensor of the whole row for every chat
        for q, k, v, bounds in zip(query, key, value, segments, strict=True):
            lengths = [e - s for s, e in itertools.pairwise(bounds)]
            spans = [
                F.scaled_dot_product_attention(
                    qs[None], ks[None], vs[None], dropout_p=dropout, scale=scaling, is_causal=True
                )
                for qs, ks, vs in zip(
                    q.split(lengths, dim=1),
                    k.split(lengths, dim=1),
                    v.split(lengths, dim=1),
                    strict=True,
                )
            ]
            rows.append(torch.cat(spans, dim=2))
        out = torch.cat(rows, dim=0)  # (rows, heads, length, head_dim)
    return out.transpose(1, 2).contiguous(), None


def _packed(module: Any, q: Any, k: Any, v: Any, mask: Any, **kw: Any) -> tuple[Any, None]:
    return _packed_attention(module, q, k, v, mask, float32=False, **kw)


def _packed_float32(module: Any, q: Any, k: Any, v: Any, mask: Any, **kw: Any) -> tuple[Any, None]:
    return _packed_attention(module, q, k, v, mask, float32=True, **kw)


AttentionInterface.register(PACKED, _packed)
AttentionInterface.register(PACKED_FLOAT32, _packed_float32)


def _lora_forward_float32(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """PEFT's LoRA ``Linear.forward`` with the adapter branch and the sum in float32."""
    result = self.base_layer(x, *args, **kwargs)  # the frozen projection, autocast (bf16)
    if self.disable_adapters or self.merged:
        return result  # type: ignore[no-any-return]
    with torch.autocast(device_type=x.device.type, enabled=False):
        result = result.float()
        wide = x.float()
        for name in self.active_adapters:
            if name in self.lora_A:
                down = self.lora_A[name](self.lora_dropout[name](wide))
                result = result + self.lora_B[name](down) * self.scaling[name]
    return result  # type: ignore[no-any-return]


def is_low_precision(dtype: torch.dtype | None) -> bool:
    return dtype is not None and dtype != torch.float32


@contextmanager
def recipe_forward(model: Any, dtype: torch.dtype | None) -> Iterator[None]:
    """Within the block: per-chat attention, and float32 LoRA and attention under ``dtype``.

    Attention switches only from ``sdpa`` (the recipe loads models with it). Under a low-precision
    ``dtype``, plain PEFT LoRA ``Linear`` layers add their update in float32 (LoRA variants such
    as DoRA and QLoRA's 4-bit layers keep PEFT's forward). Everything is put back when the block
    ends, so saving or merging sees the model as it was. The training step holds the block over
    its backward too: gradient checkpointing recomputes the forward there, and must see the same
    attention and LoRA forward (a nested block changes nothing).
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(base, "_hivemind_recipe_forward", False):  # nested: the outer block set it up
        yield
        return
    config = base.config
    previous = config._attn_implementation
    low = is_low_precision(dtype)
    layers = (
        [m for m in base.modules() if type(m) is LoraLinear and not m.lora_variant] if low else []
    )
    for layer in layers:
        layer.forward = types.MethodType(_lora_forward_float32, layer)  # type: ignore[method-assign]
    if previous == "sdpa":
        config._attn_implementation = PACKED_FLOAT32 if low else PACKED
    base._hivemind_recipe_forward = True
    try:
        yield
    finally:
        base._hivemind_recipe_forward = False
        config._attn_implementation = previous
        for layer in layers:
            del layer.forward
