"""What trains and how: the trained parameters, the optimizer and the per-epoch lr schedule.

The optimizer comes from timm's ``create_optimizer_v2`` over exactly the given parameters (or
parameter groups); the schedule is torch's ReduceLROnPlateau, timm's cosine factory, or none.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from torch import nn

from ..checkpoint import scheduler_to_json


def split_param_groups(params: Sequence[Any] | None) -> tuple[list[nn.Parameter] | None, list[dict] | None]:
    """``params`` as a flat tensor list, and the parameter groups when it was given as groups."""
    if params is None:
        return None, None
    params = list(params)
    if params and all(isinstance(g, dict) for g in params):
        for i, g in enumerate(params):
            if "params" not in g:
                raise ValueError(f"parameter group {i} lacks 'params'; got keys {sorted(g)}")
        groups = [{**g, "params": list(g["params"])} for g in params if list(g["params"])]
        return [p for g in groups for p in g["params"]], groups
    if any(isinstance(g, dict) for g in params):
        raise TypeError("params mixes tensors and parameter-group dicts; give one or the other")
    return params, None


def check_trainable_params(model: nn.Module, params: Sequence[nn.Parameter] | None) -> list[nn.Parameter]:
    """The tensors to train: ``params`` checked to be trainable parameters of ``model``, or (None)
    every parameter with ``requires_grad``.

    Raises:
        ValueError: nothing to train, or a tensor is not a parameter of ``model`` or is frozen.
    """
    if params is None:
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError(f"{type(model).__name__} has no parameter with requires_grad=True: nothing to train")
        return params
    params = list(params)
    names = {id(p): n for n, p in model.named_parameters()}
    for i, p in enumerate(params):
        if id(p) not in names:
            raise ValueError(f"params[{i}] (shape {tuple(p.shape)}) is not a parameter of {type(model).__name__}")
        if not p.requires_grad:
            raise ValueError(f"params[{i}] ({names[id(p)]}) has requires_grad=False; it cannot train")
    if not params:
        raise ValueError("params is empty: nothing to train")
    return params


def build_optimizer(params: Sequence[nn.Parameter] | Sequence[dict], stage: Any) -> torch.optim.Optimizer:
    """timm's ``create_optimizer_v2`` over exactly ``params`` (tensors, or parameter groups
    ``{"params": [...], "lr": ...}``; a group without ``lr`` uses ``stage.lr``)."""
    return create_optimizer_v2(list(params), opt=stage.optimizer, lr=stage.lr, weight_decay=stage.weight_decay)


class EpochScheduler:
    """``plateau`` (torch ReduceLROnPlateau on the validation loss, as MulT), ``cosine`` (timm's
    factory, per epoch) or ``none``; ``step(epochs_done, valid_loss)`` after each epoch.

    The plateau scheduler is torch's own: timm's wrapper does not checkpoint its counters. The
    cosine schedule is a function of the epoch and the stage's ``epochs`` alone, so a resumed run
    rebuilds it from the epoch count it is resumed with (extending ``epochs`` stretches the rest of
    the schedule instead of leaving the added epochs at the old schedule's final lr).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, stage: Any) -> None:
        self.kind = stage.scheduler
        if self.kind == "plateau":
            self.impl = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min", factor=stage.plateau_factor, patience=stage.plateau_patience
            )
        elif self.kind == "cosine":
            self.impl, _ = create_scheduler_v2(optimizer, sched="cosine", num_epochs=stage.epochs)
        elif self.kind == "none":
            self.impl = None
        else:
            raise ValueError(f"scheduler must be 'plateau', 'cosine' or 'none', got {self.kind!r}")

    def step(self, epochs_done: int, valid_loss: float) -> None:
        if self.kind == "plateau":
            self.impl.step(valid_loss)
        elif self.kind == "cosine":
            self.impl.step(epochs_done)

    def state_dict(self) -> dict[str, Any]:
        return {} if self.impl is None else scheduler_to_json(self.impl)

    def load_state_dict(self, state: dict[str, Any], epochs_done: int) -> None:
        if self.kind == "cosine":
            self.impl.step(epochs_done)  # the lr of the next epoch under this run's schedule
        elif self.impl is not None:
            self.impl.load_state_dict(state)
