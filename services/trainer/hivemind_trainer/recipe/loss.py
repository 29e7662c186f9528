"""The loss: cross-entropy on labelled (assistant) tokens only, logits computed only there.

The decoder runs on packed rows with reset position ids and a block-diagonal mask, attention
computed chat by chat, under autocast with the LoRA branches and attention in float32
(:mod:`precision`); the LM head, the widest matmul of a small model, runs in float32 and only on
hidden states whose next token is labelled, which skips most of its work on prompts. Divided by
its count, one packed batch's loss is the per-token mean a padded batch of the same chats gives
(``tests/trainer``).
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F

from hivemind_trainer.recipe.chat_format import IGNORE
from hivemind_trainer.recipe.packing import PackedBatch, block_mask
from hivemind_trainer.recipe.precision import recipe_forward, segments_of


def causal_parts(model: Any) -> tuple[Any, Any]:
    """(decoder, lm_head) of a causal LM, through a PEFT wrapper if there is one."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder(), base.get_output_embeddings()


def autocast_for(device: str, dtype: torch.dtype | None) -> Any:
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=dtype)


def packed_loss_sum(
    model: Any, batch: PackedBatch, *, device: str, dtype: torch.dtype | None
) -> tuple[torch.Tensor, int]:
    """(sum of token losses, number of labelled tokens) of one packed batch."""
    decoder, head = causal_parts(model)
    ids = batch.input_ids.to(device, non_blocking=True)
    positions = batch.position_ids.to(device, non_blocking=True)
    mask = block_mask(batch.segment_ids).to(device, non_blocking=True)
    targets = batch.labels[:, 1:]
    keep = targets != IGNORE
    count = int(keep.sum())
    with autocast_for(device, dtype), recipe_forward(model, dtype):
        hidden = decoder(
            input_ids=ids,
            position_ids=positions,
            attention_mask=mask,
            use_cache=False,
            segments=segments_of(batch.segment_ids),
        ).last_hidden_state
    picked = hidden[:, :-1][keep.to(device)].float()
    bias = None if head.bias is None else head.bias.float()
    logits = F.linear(picked, head.weight.float(), bias)  # float32, outside autocast
    loss = F.cross_entropy(logits, targets[keep].to(device), reduction="sum")
    return loss, count


@torch.no_grad()
def mean_loss(
    model: Any, batches: list[PackedBatch], *, device: str, dtype: torch.dtype | None
) -> float:
    """Mean loss per labelled token over ``batches`` (eval mode, no gradients)."""
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    for batch in batches:
        loss, n = packed_loss_sum(model, batch, device=device, dtype=dtype)
        total += loss.double()
        count += n
    if was_training:
        model.train()
    return float(total) / count if count else float("nan")
