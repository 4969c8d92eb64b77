"""MSA evaluation metrics with MMSA's and MulT's definitions, as pure functions and ``Metric`` classes.

* :mod:`~promptkit.metrics.functional`: the pure functions (numpy arrays or torch tensors in, python
  floats out), with the definitions and the two deliberate differences in reporting from MMSA.
* :mod:`~promptkit.metrics.classes`: torchmetrics ``Metric`` classes that only accumulate and call a
  pure function in ``compute``.
* :mod:`~promptkit.metrics.kinds`: one record per metric kind (task, ``Metric``, model-selection key,
  accuracy and F1 keys).

Every public name is importable from ``promptkit.metrics``.
"""

from __future__ import annotations

from ._inputs import EMOTIONS
from .classes import (
    ClassificationMetrics,
    IemocapBinaryMetrics,
    RegressionMetrics,
    SimsMetrics,
)
from .functional import (
    classification_metrics,
    iemocap_binary_metrics,
    pearson,
    regression_metrics,
    sims_metrics,
    weighted_f1,
)
from .kinds import KINDS, MetricKind, metric_kind, metrics_for, primary_metric

__all__ = [
    "EMOTIONS",
    "KINDS",
    "ClassificationMetrics",
    "IemocapBinaryMetrics",
    "MetricKind",
    "RegressionMetrics",
    "SimsMetrics",
    "classification_metrics",
    "iemocap_binary_metrics",
    "metric_kind",
    "metrics_for",
    "pearson",
    "primary_metric",
    "regression_metrics",
    "sims_metrics",
    "weighted_f1",
]
