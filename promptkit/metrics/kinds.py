"""Metric kinds: one record per kind says its task, its ``Metric``, the key that selects the best
model and the accuracy and F1 keys the tables report. Every part of promptkit reads these records
(:func:`metric_kind`) instead of naming kinds itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from torchmetrics import Metric

from ._inputs import EMOTIONS
from .classes import (
    ClassificationMetrics,
    IemocapBinaryMetrics,
    RegressionMetrics,
    SimsMetrics,
    _CatMetric,
)
from .functional import (
    classification_metrics,
    iemocap_binary_metrics,
    regression_metrics,
    sims_metrics,
)

__all__ = ["KINDS", "MetricKind", "metric_kind", "metrics_for", "primary_metric"]


@dataclass(frozen=True)
class MetricKind:
    """One metric kind (``[data] metric`` of a recipe, ``metric_kind`` of a fit).

    Attributes:
        name: the kind's name (``"mosi"``).
        task: ``"regression"`` or ``"classification"``: the data it scores.
        metric: the torchmetrics class that accumulates and scores it.
        function: the pure function ``(preds, labels) -> {key: value}`` behind ``metric``.
        primary: the key that selects the best epoch and drives early stopping.
        higher_is_better: whether a larger ``primary`` is better.
        accuracy, f1: the accuracy and F1 keys the protocol tables (and the paper's Table 1) report.
        nonzero_accuracy: the accuracy scores only samples with a non-zero label, its sign against
            the prediction's (MOSI/MOSEI's ``non0_acc2``); the paper's CMU-MOSI figures compare
            with these kinds only.
        out_dim: the model output width the kind needs, or None for any (IEMOCAP: four binary
            tasks, 8).
        tasks: the per-task accuracy keys a run also pairs per sample (IEMOCAP: one per emotion).
    """

    name: str
    task: Literal["regression", "classification"]
    metric: type[_CatMetric]
    function: Callable[[Any, Any], dict[str, float]]
    primary: str
    higher_is_better: bool
    accuracy: str
    f1: str
    nonzero_accuracy: bool = False
    out_dim: int | None = None
    tasks: tuple[str, ...] = ()


_RECORDS: dict[str, MetricKind] = {k.name: k for k in (
    MetricKind("mosi", "regression", RegressionMetrics, regression_metrics, "mae", False, "non0_acc2", "non0_f1",
               nonzero_accuracy=True),
    MetricKind("mosei", "regression", RegressionMetrics, regression_metrics, "mae", False, "non0_acc2", "non0_f1",
               nonzero_accuracy=True),
    MetricKind("sims", "regression", SimsMetrics, sims_metrics, "mae", False, "acc2", "f1"),
    MetricKind("iemocap_binary", "classification", IemocapBinaryMetrics, iemocap_binary_metrics, "avg_acc", True,
               "avg_acc", "avg_f1", out_dim=8, tasks=tuple(f"{e}_acc" for e in EMOTIONS)),
    MetricKind("classification", "classification", ClassificationMetrics, classification_metrics, "acc", True,
               "acc", "f1"),
)}
KINDS: tuple[str, ...] = tuple(_RECORDS)
"""Task kinds known to :func:`metric_kind`, :func:`metrics_for` and :func:`primary_metric` (``mosei``
is ``mosi``'s alias)."""


def metric_kind(kind: str) -> MetricKind:
    """The record of a metric kind.

    Example:
        >>> metric_kind("sims").accuracy, metric_kind("iemocap_binary").task
        ('acc2', 'classification')

    Raises:
        ValueError: an unknown kind, naming the known ones.
    """
    if kind not in _RECORDS:
        raise ValueError(f"unknown task kind {kind!r}; expected one of {', '.join(KINDS)}")
    return _RECORDS[kind]


def metrics_for(kind: str, **kwargs: Any) -> Metric:
    """A fresh ``Metric`` for a task kind; ``kwargs`` go to torchmetrics' ``Metric.__init__``.

    Example:
        >>> type(metrics_for("sims")).__name__
        'SimsMetrics'
    """
    return metric_kind(kind).metric(**kwargs)


def primary_metric(kind: str) -> tuple[str, bool]:
    """``(key, higher_is_better)`` used for model selection on the validation split.

    Example:
        >>> primary_metric("mosi"), primary_metric("iemocap_binary")
        (('mae', False), ('avg_acc', True))
    """
    k = metric_kind(kind)
    return k.primary, k.higher_is_better
