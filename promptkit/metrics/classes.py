"""torchmetrics ``Metric`` classes over the pure functions of :mod:`promptkit.metrics.functional`.

They only accumulate predictions and targets (``dist_reduce_fx="cat"``: none of these metrics is a
sum over samples) and call the pure function in ``compute``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from ._inputs import EMOTIONS, _check_logits_labels, _check_vector_pair
from .functional import (
    classification_metrics,
    iemocap_binary_metrics,
    regression_metrics,
    sims_metrics,
)

__all__ = ["ClassificationMetrics", "IemocapBinaryMetrics", "RegressionMetrics", "SimsMetrics"]


class _CatMetric(Metric):
    """Accumulates ``preds`` / ``target`` batches (shape-checked in ``update``) and applies ``_fn``.

    Values (NaN, label range) are checked in ``compute`` by the pure function, so ``update`` does
    not force a device sync per batch.
    """

    is_differentiable = False
    higher_is_better: bool | None = None
    full_state_update = False
    _fn: Callable[[Any, Any], dict[str, float]]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")

    def _check(self, preds: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Store one batch (detached) after checking its shapes."""
        preds, target = self._check(torch.as_tensor(preds), torch.as_tensor(target))
        if self.preds and preds.shape[1:] != self.preds[0].shape[1:]:
            raise ValueError(f"preds shape {tuple(preds.shape)} does not match earlier batches "
                             f"(N, {', '.join(map(str, self.preds[0].shape[1:]))})")
        self.preds.append(preds.detach())
        self.target.append(target.detach())

    def compute(self) -> dict[str, float]:
        """The pure function on everything accumulated (across processes after sync)."""
        if isinstance(self.preds, list) and not self.preds:
            raise RuntimeError(f"{type(self).__name__}.compute() called before any update()")
        return type(self)._fn(dim_zero_cat(self.preds), dim_zero_cat(self.target))


class _VectorMetric(_CatMetric):
    def _check(self, preds: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_vector_pair(preds.shape, target.shape)
        return preds.reshape(-1), target.reshape(-1)


class RegressionMetrics(_VectorMetric):
    """CMU-MOSI / MOSEI metrics over all batches: :func:`regression_metrics` on the concatenation.

    ``update(preds (B,) or (B, 1), target (B,) or (B, 1))``; ``compute() -> dict`` with keys
    ``has0_acc2, has0_f1, non0_acc2, non0_f1, acc5, acc7, mae, corr``.

    Example:
        >>> metric = RegressionMetrics()
        >>> metric.update(torch.tensor([1.2, -0.4]), torch.tensor([1.0, -1.0]))
        >>> metric.update(torch.tensor([0.0, 2.6]), torch.tensor([0.3, 3.0]))
        >>> metric.compute()["acc7"]
        0.75
    """

    _fn = staticmethod(regression_metrics)


class SimsMetrics(_VectorMetric):
    """CH-SIMS metrics over all batches: :func:`sims_metrics` on the concatenation.

    Keys ``acc2, acc3, acc5, f1, mae, corr``.

    Example:
        >>> metric = SimsMetrics()
        >>> metric.update(torch.tensor([0.0, 0.5, -0.8, 1.4]), torch.tensor([0.2, 0.6, -0.6, 1.0]))
        >>> metric.compute()["acc2"]
        0.75
    """

    _fn = staticmethod(sims_metrics)


class IemocapBinaryMetrics(_CatMetric):
    """IEMOCAP four binary tasks over all batches: :func:`iemocap_binary_metrics` on the concatenation.

    ``update(logits (B, 4, 2) or (B, 8), labels (B, 4))``; keys ``<emotion>_acc``, ``<emotion>_f1``
    for each of :data:`EMOTIONS`, ``avg_acc``, ``avg_f1``.

    Example:
        >>> metric = IemocapBinaryMetrics()
        >>> metric.update(torch.zeros(3, 8), torch.zeros(3, 4, dtype=torch.long))
        >>> metric.compute()["avg_acc"]
        1.0
    """

    _fn = staticmethod(iemocap_binary_metrics)

    def _check(self, preds: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_logits_labels(preds.shape, target.shape, binary=True)
        return preds.reshape(preds.shape[0], len(EMOTIONS), 2), target


class ClassificationMetrics(_CatMetric):
    """Single-label classification over all batches: :func:`classification_metrics`; keys ``acc, f1``.

    Example:
        >>> metric = ClassificationMetrics()
        >>> metric.update(torch.eye(3)[[0, 1]], torch.tensor([0, 1]))
        >>> metric.update(torch.eye(3)[[2, 2]], torch.tensor([2, 1]))
        >>> metric.compute()["acc"]
        0.75
    """

    _fn = staticmethod(classification_metrics)

    def _check(self, preds: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_logits_labels(preds.shape, target.shape, binary=False)
        return preds, target
