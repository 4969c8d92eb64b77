"""The training objective: the task loss, a model's auxiliary loss, and predictions for metrics.

Regression is L1 on ``preds (B, 1)``; classification is cross-entropy, where labels ``(B, K)``
with logits ``(B, K*C)`` are K tasks of C classes (IEMOCAP's four binary tasks).

A forward's output is checked once, where it turns into a loss or predictions
(:func:`check_finite_output`): NaN/inf is an error naming the model, where it ran and the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..hookspec import select_output
from ..outputs import NonFiniteLossError, NonFiniteOutputError, check_finite_output, model_name

__all__ = [
    "NonFiniteLossError",
    "NonFiniteOutputError",
    "auxiliary_loss",
    "check_finite_output",
    "metric_preds",
    "model_name",
    "task_loss",
]


def task_loss(preds: torch.Tensor, labels: torch.Tensor, task: str) -> torch.Tensor:
    """L1 for regression (``preds (B, 1)``, ``labels (B,)``); cross-entropy otherwise.

    Classification: ``preds (B, C)`` with ``labels (B,)``, or ``preds (B, K*C)`` with
    ``labels (B, K)`` (K tasks of C classes each).
    """
    if not isinstance(preds, torch.Tensor):
        select_output(preds, None)  # raises: names the type and the spec's 'output' entry
    preds = preds.float()
    if task == "regression":
        if preds.dim() != 2 or preds.shape[1] != 1 or preds.shape[0] != labels.shape[0]:
            raise ValueError(f"regression needs preds (B, 1) for labels {tuple(labels.shape)}, got {tuple(preds.shape)}")
        return F.l1_loss(preds.squeeze(-1), labels.reshape(-1).float())
    if labels.dim() == 1:
        return F.cross_entropy(preds, labels.long())
    k = labels.shape[1]
    if preds.shape[1] % k:
        raise ValueError(f"{k} classification tasks need logits (B, {k}*C), got {tuple(preds.shape)}")
    logits = rearrange(preds, "b (k c) -> (b k) c", k=k)
    return F.cross_entropy(logits, rearrange(labels.long(), "b k -> (b k)"))


def auxiliary_loss(model: nn.Module) -> torch.Tensor | None:
    """The extra training loss of the last forward: ``auxiliary_loss()`` of the model, else of its
    ``backbone`` (a prompter's reconstruction loss, a backbone's own terms), or None."""
    for m in (model, getattr(model, "backbone", None)):
        fn = getattr(m, "auxiliary_loss", None)
        if callable(fn):
            return fn()
    return None


def metric_preds(preds: torch.Tensor) -> torch.Tensor:
    """``preds`` as the metrics read them: float on CPU, ``(B, 1)`` squeezed to ``(B,)``."""
    preds = preds.detach().float().cpu()
    return preds.squeeze(-1) if preds.shape[-1] == 1 else preds
