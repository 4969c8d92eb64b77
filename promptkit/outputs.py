"""Checks of a model's output, shared by training and evaluation: NaN/inf is an error naming the
model, where it ran and the batch's samples (:func:`check_finite_output`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message names epoch, step and samples."""


class NonFiniteOutputError(NonFiniteLossError):
    """A forward returned NaN/inf (in training the loss would be NaN/inf too, or meaningless);
    the message names the model, the stage or split, and the batch's samples."""


def model_name(model: Any) -> str:
    """The class name a message gives: ``MMIM``, ``MMIM in MissingModalityPrompter`` for a wrapped
    backbone (a prompter, a data-parallel wrapper's ``module``)."""
    inner = getattr(model, "module", None)  # DistributedDataParallel and the like
    if isinstance(inner, nn.Module):
        return model_name(inner)
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, nn.Module):
        return f"{type(backbone).__name__} in {type(model).__name__}"
    return type(model).__name__


def check_finite_output(preds: Any, name: str, where: str, samples: Sequence[int] | None = None,
                        note: str = "") -> None:
    """Raise :class:`NonFiniteOutputError` when ``preds (B, ...)`` holds NaN/inf (one reduction
    when it does not); a non-tensor output is left to :func:`task_loss`'s error.

    Args:
        name: the model, for the message (see :func:`model_name`).
        where: where the forward ran, e.g. ``"training epoch 2, step 1/6 of runs/x/pretrain"``.
        samples: the dataset index of each row; the message names those of the rows not finite.
        note: appended to the message (e.g. the last good checkpoint).
    """
    if not isinstance(preds, torch.Tensor) or bool(torch.isfinite(preds).all()):
        return
    flat = preds.detach().reshape(preds.shape[0], -1) if preds.dim() else preds.detach().reshape(1, 1)
    rows = (~torch.isfinite(flat)).any(1).nonzero().flatten().tolist()
    bad = [samples[i] for i in rows] if samples is not None else rows
    raise NonFiniteOutputError(
        f"{name} returned NaN/inf outputs at {where}: {len(rows)} of {flat.shape[0]} sample(s), "
        f"{'sample indices' if samples is not None else 'batch rows'} {bad} (inputs beyond the range the model "
        f"computes in finite floats, or diverged weights){note}"
    )
