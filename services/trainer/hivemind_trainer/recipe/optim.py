"""The recipe's optimizers: AdamW, 8-bit paged AdamW (bitsandbytes, CUDA) and Muon.

Muon (``torch.optim.Muon``) orthogonalizes the update of 2-D matrices; it is meant for the hidden
matrices of the transformer only, so :func:`muon_groups` splits the trainable parameters: every
2-D matrix inside the decoder layers (attention and MLP projections, and LoRA's A and B, which
sit on those projections) goes to Muon, and everything else (embeddings, norms, the LM head,
biases) to AdamW. Muon runs with ``adjust_lr_fn="match_rms_adamw"`` so it reuses AdamW's
learning rate and weight decay. Two optimizers step as one through :class:`OptimizerSet`, each
with its own copy of the learning-rate schedule.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterable
from typing import Any

import torch

from hivemind_common.errors import Invalid

OPTIMIZERS = ("adamw", "adamw8bit", "muon")
_OUTSIDE_HIDDEN = ("embed", "lm_head", "wte", "wpe", "norm", "output")


def is_hidden_matrix(name: str, param: torch.Tensor) -> bool:
    """A 2-D matrix of a decoder layer (not an embedding, a norm or the head)."""
    if param.ndim != 2:
        return False
    lowered = name.lower()
    if any(part in lowered for part in _OUTSIDE_HIDDEN):
        return False
    return ".layers." in lowered or ".h." in lowered or ".blocks." in lowered


def muon_groups(
    named: Iterable[tuple[str, torch.Tensor]],
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(Muon parameters, AdamW parameters) among the trainable ``named`` parameters."""
    muon: list[torch.Tensor] = []
    adamw: list[torch.Tensor] = []
    for name, param in named:
        if not param.requires_grad:
            continue
        (muon if is_hidden_matrix(name, param) else adamw).append(param)
    return muon, adamw


class OptimizerSet:
    """Several optimizers stepped, zeroed, saved and restored together."""

    def __init__(self, optimizers: list[torch.optim.Optimizer]) -> None:
        if not optimizers:
            raise ValueError("no optimizer")
        self.optimizers = optimizers

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {"optimizers": [opt.state_dict() for opt in self.optimizers]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("optimizers")
        if not isinstance(saved, list) or len(saved) != len(self.optimizers):
            raise ValueError("the checkpoint was written with another optimizer")
        for opt, one in zip(self.optimizers, saved, strict=True):
            opt.load_state_dict(one)

    def schedulers(self, factor: Callable[[int], float]) -> SchedulerSet:
        return SchedulerSet(
            [torch.optim.lr_scheduler.LambdaLR(opt, factor) for opt in self.optimizers]
        )


class SchedulerSet:
    def __init__(self, schedulers: list[Any]) -> None:
        self.schedulers = schedulers

    def step(self) -> None:
        for s in self.schedulers:
            s.step()

    def state_dict(self) -> dict[str, Any]:
        return {"schedulers": [s.state_dict() for s in self.schedulers]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for s, one in zip(self.schedulers, state["schedulers"], strict=True):
            s.load_state_dict(one)


def build_optimizer(
    model: torch.nn.Module, name: str, *, lr: float, weight_decay: float, device: str
) -> OptimizerSet:
    """The optimizer ``name`` over ``model``'s trainable parameters."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise Invalid("the model has no trainable parameter", param="optimizer")
    params = [p for _, p in named]
    if name == "adamw":
        return OptimizerSet([torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)])
    if name == "adamw8bit":
        if not device.startswith("cuda") or importlib.util.find_spec("bitsandbytes") is None:
            raise Invalid(
                "optimizer adamw8bit needs a CUDA GPU and bitsandbytes", param="optimizer"
            )
        import bitsandbytes as bnb  # type: ignore[import-not-found]

        opt = bnb.optim.PagedAdamW8bit(params, lr=lr, weight_decay=weight_decay)
        return OptimizerSet([opt])
    if name == "muon":
        muon, adamw = muon_groups(named)
        opts: list[torch.optim.Optimizer] = []
        if muon:
            opts.append(
                torch.optim.Muon(
                    muon, lr=lr, weight_decay=weight_decay, adjust_lr_fn="match_rms_adamw"
                )
            )
        if adamw:
            opts.append(torch.optim.AdamW(adamw, lr=lr, weight_decay=weight_decay))
        return OptimizerSet(opts)
    raise Invalid(f"optimizer must be one of {', '.join(OPTIMIZERS)}", param="optimizer")
