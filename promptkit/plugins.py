"""The training plug-in protocol: small hooks :func:`promptkit.train.fit` calls, in this order.

This module is neutral ground: it imports torch and nothing of :mod:`promptkit.train`, so a
plug-in (e.g. :mod:`promptkit.cggm`) can subclass :class:`TrainPlugin` without importing the
training package.

Per run:
    ``setup(model, optimizer_params, accelerator)`` once, after the optimizer is built and the
    model placed on its device (before a resumed state is loaded).

Per training step:
    1. the forward pass gives ``preds``; the task loss is computed;
    2. ``extra_loss(model, batch, preds, labels)`` → a scalar added to the loss, or None;
    3. backward;
    4. ``after_backward(model)``: gradients exist and are not yet clipped (CGGM scales the
       gradients of each modality's encoder here);
    5. gradient clipping and the optimizer step.

Per epoch (epochs count from 1):
    ``on_epoch_end(epoch)`` → a dict of numbers added, keys as given, to that epoch's history
    entry (``results.json`` / ``.csv``); prefix the keys to keep them apart from the loop's own.

Checkpoints:
    ``state_dict()`` → ``(tensors, meta)``, a dict of tensors and a JSON-serialisable dict;
    ``load_state_dict(tensors, meta)`` restores it on resume. A plug-in with its own optimizer
    can use :func:`promptkit.checkpoint.optimizer_to_flat` / ``optimizer_from_flat``.

Plug-ins run only in training; evaluation calls none of them. A plug-in that draws random numbers
should use torch's global generator, which the loop reseeds from ``(seed, epoch)`` at every epoch
start, so a resumed run stays identical to an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

PLUGIN_METHODS = ("setup", "extra_loss", "after_backward", "on_epoch_end", "state_dict", "load_state_dict")


class TrainPlugin:
    """Base class with no-op hooks; override the ones you need.

    The loop duck-types plug-ins (any object with these six methods works); checkpoints record
    each plug-in's class name, and a resumed run must have the same plug-ins in the same order.
    """

    def setup(self, model: nn.Module, optimizer_params: list[nn.Parameter], accelerator: Any) -> None:
        """Called once; ``optimizer_params`` are the tensors the main optimizer trains."""

    def extra_loss(
        self, model: nn.Module, batch: dict[str, torch.Tensor], preds: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor | None:
        """A scalar added to the training loss, or None. ``preds``: ``(B, out_dim)``."""
        return None

    def after_backward(self, model: nn.Module) -> None:
        """Called after ``backward``, before gradient clipping and the optimizer step."""

    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        """Numbers to log for the finished ``epoch`` (1-based)."""
        return {}

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """``(tensors, json_meta)`` saved in every checkpoint."""
        return {}, {}

    def load_state_dict(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


def check_plugins(plugins: Iterable[Any]) -> list[Any]:
    """``plugins`` as a list, each checked to have every hook of :data:`PLUGIN_METHODS`.

    Raises:
        TypeError: a plug-in lacks one of the hooks (the message names them).
    """
    plugins = list(plugins)
    for p in plugins:
        lacking = [m for m in PLUGIN_METHODS if not callable(getattr(p, m, None))]
        if lacking:
            raise TypeError(f"plug-in {type(p).__name__} lacks {lacking}; subclass promptkit.train.TrainPlugin")
    return plugins
