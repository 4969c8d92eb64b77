"""Scoring one split: loss and metrics of a model in eval mode, in a fixed order, fixed masks.

The loop scores the validation split after every epoch and the test split once, with the best
weights; callers with their own protocol (:mod:`promptkit.evaluation`) call :func:`evaluate`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ..data import make_loader
from ..metrics import metrics_for
from ..seeding import seeded_generator
from .distributed import epoch_masks
from .forward import ForwardFn, MaskFn, batch_to_device, default_forward
from .losses import check_finite_output, metric_preds, model_name, task_loss


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Any,
    *,
    task: str,
    modalities: Sequence[str],
    metric_kind: str,
    batch_size: int = 256,
    forward: ForwardFn | None = None,
    mask_fn: MaskFn | None = None,
    mask_seed: int = 0,
    device: str | torch.device | None = None,
    autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
    accelerator: Any = None,
    counts: dict[str, int] | None = None,
    where: str = "evaluation",
) -> dict[str, float]:
    """Loss and metrics of ``model`` on one split (eval mode, fixed order).

    With ``mask_fn`` the masks come from a generator seeded by ``mask_seed`` (one per sample,
    picked by index), so every call sees the same masks. With an ``accelerator`` of several
    processes each scores its shard and the predictions are gathered (``gather_for_metrics``), so
    every process returns the metrics of every sample, each counted once; ``counts["samples"]``
    receives that count.

    Raises:
        NonFiniteOutputError: a batch's predictions hold NaN/inf (the message names the model,
            ``where`` - the split - and the batch's samples).
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    forward = forward or default_forward(modalities, mask_fn is not None)
    masks = None if mask_fn is None else epoch_masks(mask_fn, dataset, 0, seeded_generator(mask_seed))
    metric = metrics_for(metric_kind)
    model.eval()
    total, n = 0.0, 0
    # evaluation data: the split in its fixed order; several processes score a shard each
    loader = make_loader(dataset, batch_size, shuffle=False)
    sharded = accelerator is not None and accelerator.num_processes > 1
    if sharded:
        loader = accelerator.prepare_data_loader(loader, device_placement=False)
    for step, batch in enumerate(loader, start=1):
        batch = batch_to_device(batch, device)
        if masks is not None:
            batch["mask"] = masks[batch["index"].cpu()].to(device)
        with autocast() if autocast else contextlib.nullcontext():
            preds = forward(model, batch)
        labels, index = batch["labels"], batch["index"]
        if sharded:  # every sample once, the padding of uneven shards dropped
            preds, labels, index = accelerator.gather_for_metrics((preds.contiguous(), labels.contiguous(),
                                                                   index.contiguous()))
        loss = task_loss(preds, labels, task)
        if not bool(torch.isfinite(preds).all()):  # gathered: every process refuses the same batch
            check_finite_output(preds, model_name(model), f"{where}, batch {step}/{len(loader)}", index.tolist())
        total += float(loss) * labels.shape[0]
        n += labels.shape[0]
        metric.update(metric_preds(preds), labels.cpu())
    out = {k: float(v) for k, v in metric.compute().items()}
    out["loss"] = total / max(n, 1)
    if counts is not None:
        counts["samples"] = n
    return out
