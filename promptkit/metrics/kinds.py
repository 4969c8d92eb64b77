"""Task kinds: which ``Metric`` scores a kind, and which key selects the best model."""

from __future__ import annotations

from typing import Any

from torchmetrics import Metric

from .classes import (
    ClassificationMetrics,
    IemocapBinaryMetrics,
    RegressionMetrics,
    SimsMetrics,
    _CatMetric,
)

__all__ = ["KINDS", "metrics_for", "primary_metric"]

_METRIC_CLASSES: dict[str, type[_CatMetric]] = {
    "mosi": RegressionMetrics,
    "mosei": RegressionMetrics,
    "sims": SimsMetrics,
    "iemocap_binary": IemocapBinaryMetrics,
    "classification": ClassificationMetrics,
}
_PRIMARY: dict[str, tuple[str, bool]] = {
    "mosi": ("mae", False),
    "mosei": ("mae", False),
    "sims": ("mae", False),
    "iemocap_binary": ("avg_acc", True),
    "classification": ("acc", True),
}
KINDS: tuple[str, ...] = tuple(_METRIC_CLASSES)
"""Task kinds known to :func:`metrics_for` and :func:`primary_metric` (``mosei`` is ``mosi``'s alias)."""


def _check_kind(kind: str) -> None:
    if kind not in _METRIC_CLASSES:
        raise ValueError(f"unknown task kind {kind!r}; expected one of {', '.join(KINDS)}")


def metrics_for(kind: str, **kwargs: Any) -> Metric:
    """A fresh ``Metric`` for a task kind; ``kwargs`` go to torchmetrics' ``Metric.__init__``.

    Example:
        >>> type(metrics_for("sims")).__name__
        'SimsMetrics'
    """
    _check_kind(kind)
    return _METRIC_CLASSES[kind](**kwargs)


def primary_metric(kind: str) -> tuple[str, bool]:
    """``(key, higher_is_better)`` used for model selection on the validation split.

    Example:
        >>> primary_metric("mosi"), primary_metric("iemocap_binary")
        (('mae', False), ('avg_acc', True))
    """
    _check_kind(kind)
    return _PRIMARY[kind]
