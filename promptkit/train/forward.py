"""Calling a model on a batch: the batch and callback types, the default forward, device moves.

A batch is a dict of tensors (one ``(B, T_m, D_m)`` per modality, ``labels``, ``mask (B, M)``,
``index (B,)``); a forward function maps ``(model, batch)`` to ``preds (B, out_dim)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ..hookspec import backbone_caller
from ..prompter import MissingModalityPrompter

Batch = dict[str, torch.Tensor]
ForwardFn = Callable[[nn.Module, Batch], torch.Tensor]
MaskFn = Callable[[Batch, int, torch.Generator], torch.Tensor]


def default_forward(modalities: Sequence[str], with_mask: bool, hooks: Any = None) -> ForwardFn:
    """``model(**features)``, or ``model(**features, mask=batch["mask"])`` when masks are drawn.

    A bare backbone goes through :func:`promptkit.hookspec.backbone_caller`: ``hooks`` (else the
    spec registered for its class) names its forward keywords and reads a non-tensor output. A
    prompter takes modality names and reads its backbone's output itself.
    """
    callers: dict[int, Callable[..., torch.Tensor]] = {}  # the spec is resolved once per model, not per step

    def forward(model: nn.Module, batch: Batch) -> torch.Tensor:
        if id(model) not in callers:
            callers[id(model)] = backbone_caller(model, None if isinstance(model, MissingModalityPrompter) else hooks)
        features = {m: batch[m] for m in modalities}
        extra = {"mask": batch["mask"]} if with_mask else {}
        return callers[id(model)](features, **extra)

    return forward


def batch_to_device(batch: Batch, device: torch.device) -> Batch:
    """The batch with every tensor on ``device`` (non-blocking); other values as they are."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
