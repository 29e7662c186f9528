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


def _hidden(
    model: Any, batch: PackedBatch, *, device: str, dtype: torch.dtype | None
) -> tuple[torch.Tensor, Any]:
    """The decoder's last hidden states of one packed batch, and the LM head."""
    decoder, head = causal_parts(model)
    ids = batch.input_ids.to(device, non_blocking=True)
    positions = batch.position_ids.to(device, non_blocking=True)
    mask = block_mask(batch.segment_ids).to(device, non_blocking=True)
    with autocast_for(device, dtype), recipe_forward(model, dtype):
        hidden = decoder(
            input_ids=ids,
            position_ids=positions,
            attention_mask=mask,
            use_cache=False,
            segments=segments_of(batch.segment_ids),
        ).last_hidden_state
    return hidden, head


def _head_at(hidden: torch.Tensor, head: Any, keep: torch.Tensor, device: str) -> torch.Tensor:
    """Float32 logits of the hidden states whose next token ``keep`` marks, in row order."""
    picked = hidden[:, :-1][keep.to(device)].float()
    bias = None if head.bias is None else head.bias.float()
    return F.linear(picked, head.weight.float(), bias)  # float32, outside autocast


def _logits_at(
    hidden: torch.Tensor, head: Any, labels: torch.Tensor, device: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(float32 logits, targets) where ``labels`` has a label (the next token's)."""
    targets = labels[:, 1:]
    keep = targets != IGNORE
    return _head_at(hidden, head, keep, device), targets[keep].to(device)


def _labelled_logits(
    model: Any, batch: PackedBatch, *, device: str, dtype: torch.dtype | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(float32 logits, targets) at every labelled position of one packed batch."""
    hidden, head = _hidden(model, batch, device=device, dtype=dtype)
    return _logits_at(hidden, head, batch.labels, device)


def packed_loss_sum(
    model: Any, batch: PackedBatch, *, device: str, dtype: torch.dtype | None
) -> tuple[torch.Tensor, int]:
    """(sum of token losses, number of labelled tokens) of one packed batch."""
    logits, targets = _labelled_logits(model, batch, device=device, dtype=dtype)
    return F.cross_entropy(logits, targets, reduction="sum"), int(targets.numel())


@torch.no_grad()
def labelled_scores(
    model: Any,
    batches: list[PackedBatch],
    *,
    device: str,
    dtype: torch.dtype | None,
    label_sets: dict[str, list[torch.Tensor]] | None = None,
) -> dict[str, tuple[float, float]]:
    """(mean loss, share of labelled tokens the model ranks first) over ``batches``, teacher
    forced: how sure the model is of the labels, and whether it would still say them. Under
    ``""`` for the batches' own labels, and under each name of ``label_sets`` for other labels
    of the same batches (one tensor per batch), from the same forward passes. NaN where a set
    has no label."""
    was_training = model.training
    model.eval()
    sets = {"": [b.labels for b in batches], **(label_sets or {})}
    loss = {name: torch.zeros((), dtype=torch.float64, device=device) for name in sets}
    right = dict.fromkeys(sets, 0)
    count = dict.fromkeys(sets, 0)
    for i, batch in enumerate(batches):
        hidden, head = _hidden(model, batch, device=device, dtype=dtype)
        # the sets label overlapping positions (an answer lies inside its reply): the LM head
        # and the log-softmax run once over every position some set labels
        targets = {name: labels[i][:, 1:] for name, labels in sets.items()}
        labelled = torch.stack([t != IGNORE for t in targets.values()]).any(dim=0)
        if not bool(labelled.any()):
            continue
        logits = _head_at(hidden, head, labelled, device)
        logp = torch.log_softmax(logits, dim=-1)
        top = logits.argmax(dim=-1)
        for name, t in targets.items():
            mine = t[labelled].to(device)  # the set's labels at those positions, in order
            rows = (mine != IGNORE).nonzero().squeeze(1)
            if not rows.numel():
                continue
            wanted = mine[rows]
            loss[name] -= logp[rows, wanted].sum().double()
            right[name] += int((top[rows] == wanted).sum())
            count[name] += int(rows.numel())
    if was_training:
        model.train()
    nan = float("nan")
    return {
        name: (float(loss[name]) / count[name], right[name] / count[name])
        if count[name]
        else (nan, nan)
        for name in sets
    }


def mean_loss(
    model: Any, batches: list[PackedBatch], *, device: str, dtype: torch.dtype | None
) -> float:
    """Mean loss per labelled token over ``batches`` (eval mode, no gradients)."""
    return labelled_scores(model, batches, device=device, dtype=dtype)[""][0]
