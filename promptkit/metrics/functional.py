"""MSA evaluation metrics with MMSA's and MulT's definitions, as pure functions.

The definitions follow MMSA's ``MetricsTop`` (``__eval_mosei_regression``, ``__eval_sims_regression``)
and MulT's ``eval_iemocap`` exactly; only the key names differ (lowercase, see each function).
Two deliberate differences in *reporting*, not in definition:

* MMSA rounds its MOSI/MOSEI report to 4 decimals; these functions return full precision.
* Undefined values are ``nan`` (Pearson of a constant vector, the non-zero metrics when every label
  is 0), never an exception and never a made-up number.

Weighted F1 is sklearn's ``f1_score(truth, pred, average="weighted")``, written here (sklearn is not
a dependency): the classes are those present in ``truth`` or ``pred``; each class's F1 is
``2 TP / (2 TP + FP + FN)`` and is weighted by its support in ``truth``. A class that appears only in
``pred`` has support 0 and so weight 0 (it still lowers the other classes' precision through FP).

The pure functions take numpy arrays or torch tensors (any device) and return python floats;
:mod:`promptkit.metrics.classes` wraps each in a ``Metric``.
"""

from __future__ import annotations

import math

import numpy as np
import torch  # noqa: F401  (the examples below build tensors)
from einops import rearrange

from ._inputs import (
    EMOTIONS,
    ArrayLike,
    _as_numpy,
    _check_finite,
    _check_logits_labels,
    _float_pair,
    _int_labels,
)

__all__ = [
    "classification_metrics",
    "iemocap_binary_metrics",
    "pearson",
    "regression_metrics",
    "sims_metrics",
    "weighted_f1",
]

# CH-SIMS bins (MMSA): inner edges of right-closed intervals on [-1, 1]; class = #edges below value.
_SIMS_EDGES = {
    "acc2": (0.0,),  # [-1, 0], (0, 1]
    "acc3": (-0.1, 0.1),  # [-1, -0.1], (-0.1, 0.1], (0.1, 1]
    "acc5": (-0.7, -0.1, 0.1, 0.7),  # [-1, -0.7], (-0.7, -0.1], (-0.1, 0.1], (0.1, 0.7], (0.7, 1]
}


# --------------------------------------------------------------------------- building blocks


def _accuracy(truth: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(truth == pred)) if truth.size else math.nan


def weighted_f1(truth: ArrayLike, pred: ArrayLike) -> float:
    r"""Support-weighted F1, as sklearn's ``f1_score(truth, pred, average="weighted")``.

    .. math:: F_1^w = \frac{1}{N} \sum_{c \in C} n_c \, \frac{2\,TP_c}{2\,TP_c + FP_c + FN_c}

    with ``C`` the classes present in ``truth`` or ``pred`` and ``n_c`` the count of ``c`` in ``truth``.
    Not symmetric: the weights come from ``truth``. ``nan`` for empty input.

    Args:
        truth: ``(N,)`` true class labels (any hashable numeric / bool values).
        pred: ``(N,)`` predicted class labels.

    Example:
        >>> round(weighted_f1([0, 0, 0, 1], [0, 0, 1, 1]), 4)  # F1_0 = 0.8, F1_1 = 2/3
        0.7667
    """
    t = _as_numpy(truth, "truth").reshape(-1)
    p = _as_numpy(pred, "pred").reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"truth and pred must have the same length, got {t.size} and {p.size}")
    if t.size == 0:
        return math.nan
    classes, codes = np.unique(np.concatenate([t, p]), return_inverse=True)
    t_codes, p_codes = codes[: t.size], codes[t.size:]
    k = classes.size
    support = np.bincount(t_codes, minlength=k)
    predicted = np.bincount(p_codes, minlength=k)
    tp = np.bincount(t_codes[t_codes == p_codes], minlength=k)
    f1 = 2.0 * tp / (support + predicted)  # support + predicted = 2TP + FP + FN > 0 for every listed class
    return float(np.sum(support * f1) / t.size)


def pearson(pred: ArrayLike, truth: ArrayLike) -> float:
    r"""Pearson correlation, as ``np.corrcoef(pred, truth)[0, 1]`` (computed in float64).

    .. math:: r = \frac{\sum_i (p_i - \bar p)(t_i - \bar t)}{\sqrt{\sum_i (p_i - \bar p)^2 \sum_i (t_i - \bar t)^2}}

    Returns ``nan`` when either vector is constant (including N = 1), where numpy also gives ``nan``
    (0/0), or, through rounding, an arbitrary number; MMSA reports that ``nan`` as is. Clipped to [-1, 1].

    Example:
        >>> pearson([1.0, 2.0, 3.0], [2.0, 4.0, 7.0])  # doctest: +ELLIPSIS
        0.993...
        >>> pearson([1.0, 1.0, 1.0], [2.0, 4.0, 7.0])
        nan
    """
    p, t = _float_pair(pred, truth)
    if np.ptp(p) == 0 or np.ptp(t) == 0:
        return math.nan
    p = p.astype(np.float64) - p.mean(dtype=np.float64)
    t = t.astype(np.float64) - t.mean(dtype=np.float64)
    r = np.sum(p * t) / math.sqrt(np.sum(p * p) * np.sum(t * t))
    return float(np.clip(r, -1.0, 1.0))


def _multiclass_acc(pred: np.ndarray, truth: np.ndarray, bound: float) -> float:
    """Share of samples whose ``round(clip(., -bound, bound))`` agree (numpy rounds half to even)."""
    return _accuracy(np.round(np.clip(truth, -bound, bound)), np.round(np.clip(pred, -bound, bound)))


def _mae(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(np.abs(pred.astype(np.float64) - truth.astype(np.float64))))


# --------------------------------------------------------------------------- pure metric functions


def regression_metrics(pred: ArrayLike, truth: ArrayLike) -> dict[str, float]:
    r"""CMU-MOSI / CMU-MOSEI metrics, MMSA's ``__eval_mosei_regression``.

    With :math:`[x]` numpy's round-half-to-even (``2.5 → 2``, ``-0.5 → -0``, ``1.5 → 2``):

    * ``has0_acc2``, ``has0_f1``: accuracy / weighted F1 of :math:`p_i \ge 0` vs :math:`t_i \ge 0` over
      all samples (a label of exactly 0 counts as non-negative). MMSA: Has0_acc_2, Has0_F1_score.
    * ``non0_acc2``, ``non0_f1``: the same with :math:`> 0`, over samples with :math:`t_i \ne 0` only;
      ``nan`` when every label is 0. MMSA: Non0_acc_2, Non0_F1_score.
    * ``acc5`` = :math:`\frac1N \sum_i 1\{[\mathrm{clip}(p_i, \pm 2)] = [\mathrm{clip}(t_i, \pm 2)]\}`,
      ``acc7`` the same with :math:`\pm 3`. MMSA: Mult_acc_5, Mult_acc_7.
    * ``mae`` = :math:`\frac1N \sum_i |p_i - t_i|` (unclipped), ``corr`` = Pearson (see :func:`pearson`).

    Thresholds and rounding are applied in the inputs' common float dtype (float32 tensors stay
    float32, as in MMSA); ``mae`` and ``corr`` are reduced in float64.

    Args:
        pred: ``(N,)`` or ``(N, 1)`` predicted sentiment scores.
        truth: ``(N,)`` or ``(N, 1)`` labels in [-3, 3].

    Raises:
        ValueError: on a shape or length mismatch, empty input, or NaN/inf values.

    Example:
        >>> m = regression_metrics([1.2, -0.4, 0.0, 2.6], [1.0, -1.0, 0.3, 3.0])
        >>> m["has0_acc2"], m["non0_acc2"], m["acc7"], round(m["mae"], 4)
        (1.0, 0.75, 0.75, 0.375)
    """
    p, t = _float_pair(pred, truth)
    nonzero = t != 0
    return {
        "has0_acc2": _accuracy(t >= 0, p >= 0),
        "has0_f1": weighted_f1(t >= 0, p >= 0),
        "non0_acc2": _accuracy(t[nonzero] > 0, p[nonzero] > 0),
        "non0_f1": weighted_f1(t[nonzero] > 0, p[nonzero] > 0),
        "acc5": _multiclass_acc(p, t, 2.0),
        "acc7": _multiclass_acc(p, t, 3.0),
        "mae": _mae(p, t),
        "corr": pearson(p, t),
    }


def _sims_bins(x: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    """Class of each value for right-closed bins with the given inner edges (compared in x's dtype)."""
    return np.sum(x[:, None] > np.asarray(edges, dtype=x.dtype)[None, :], axis=1)


def sims_metrics(pred: ArrayLike, truth: ArrayLike) -> dict[str, float]:
    r"""CH-SIMS metrics, MMSA's ``__eval_sims_regression``.

    Both vectors are first clipped to [-1, 1]; *all* metrics, ``mae`` and ``corr`` included, use the
    clipped values. Classes come from right-closed bins (a value equal to an edge goes to the lower bin):

    * ``acc2``: [-1, 0], (0, 1] (a label of exactly 0 is negative). MMSA: Mult_acc_2.
    * ``acc3``: [-1, -0.1], (-0.1, 0.1], (0.1, 1]. MMSA: Mult_acc_3.
    * ``acc5``: [-1, -0.7], (-0.7, -0.1], (-0.1, 0.1], (0.1, 0.7], (0.7, 1]. MMSA: Mult_acc_5.
    * ``f1``: weighted F1 of the ``acc2`` classes. MMSA: F1_score.
    * ``mae``, ``corr``: as in :func:`regression_metrics`, on the clipped values.

    The edges are compared in the inputs' dtype: for float32 tensors (MMSA's case) ``float32(0.1)``
    equals the edge 0.1 and falls in the lower bin, as it does in MMSA.

    Args:
        pred: ``(N,)`` or ``(N, 1)`` predicted scores.
        truth: ``(N,)`` or ``(N, 1)`` labels in [-1, 1].

    Example:
        >>> m = sims_metrics([0.0, 0.5, -0.8, 1.4], [0.2, 0.6, -0.6, 1.0])
        >>> m["acc2"], m["acc3"], m["acc5"]
        (0.75, 0.75, 0.5)
    """
    p, t = _float_pair(pred, truth)
    p, t = np.clip(p, -1.0, 1.0), np.clip(t, -1.0, 1.0)
    out = {key: _accuracy(_sims_bins(t, edges), _sims_bins(p, edges)) for key, edges in _SIMS_EDGES.items()}
    out["f1"] = weighted_f1(_sims_bins(t, _SIMS_EDGES["acc2"]), _sims_bins(p, _SIMS_EDGES["acc2"]))
    out["mae"] = _mae(p, t)
    out["corr"] = pearson(p, t)
    return out


def iemocap_binary_metrics(logits: ArrayLike, labels: ArrayLike) -> dict[str, float]:
    r"""IEMOCAP as four binary tasks (Neutral, Happy, Sad, Angry), MulT's ``eval_iemocap``.

    For each emotion :math:`k`: :math:`\hat y_{ik} = \arg\max_c \mathrm{logits}_{ikc}` (ties: first index),
    ``<emotion>_acc`` = :math:`\frac1N \sum_i 1\{\hat y_{ik} = y_{ik}\}`, ``<emotion>_f1`` = weighted F1.
    ``avg_acc`` / ``avg_f1`` are the means over the four emotions (MulT prints no average).

    Args:
        logits: ``(N, 4, 2)`` or ``(N, 8)`` (read as ``(N, 4, 2)``, emotion-major as MulT's ``view``).
        labels: ``(N, 4)`` with values 0 / 1.

    Example:
        >>> logits = torch.tensor([[[2.0, 0.0]] * 4, [[0.0, 1.0]] * 4])  # (2, 4, 2)
        >>> labels = torch.tensor([[0, 0, 0, 1], [1, 1, 1, 1]])
        >>> m = iemocap_binary_metrics(logits, labels)
        >>> m["neutral_acc"], m["angry_acc"], m["avg_acc"]
        (1.0, 0.5, 0.875)
    """
    x, y = _as_numpy(logits, "logits"), _as_numpy(labels, "labels")
    _check_logits_labels(x.shape, y.shape, binary=True)
    _check_finite(x, "logits")
    x = rearrange(x, "n (k c) -> n k c", c=2) if x.ndim == 2 else x
    y = _int_labels(y, 0, 2, "labels")
    pred = np.argmax(x, axis=2)  # (N, 4)
    out: dict[str, float] = {}
    for k, emotion in enumerate(EMOTIONS):
        out[f"{emotion}_acc"] = _accuracy(y[:, k], pred[:, k])
        out[f"{emotion}_f1"] = weighted_f1(y[:, k], pred[:, k])
    out["avg_acc"] = float(np.mean([out[f"{e}_acc"] for e in EMOTIONS]))
    out["avg_f1"] = float(np.mean([out[f"{e}_f1"] for e in EMOTIONS]))
    return out


def classification_metrics(logits: ArrayLike, labels: ArrayLike) -> dict[str, float]:
    r"""Single-label classification (e.g. IEMOCAP as one 4-class task): ``acc`` and weighted ``f1``.

    :math:`\hat y_i = \arg\max_c \mathrm{logits}_{ic}` (ties: first index);
    ``acc`` = :math:`\frac1N \sum_i 1\{\hat y_i = y_i\}`; ``f1`` = :func:`weighted_f1` ``(y, ŷ)``.

    Args:
        logits: ``(N, C)`` class scores, C >= 2.
        labels: ``(N,)`` integer class ids in ``[0, C)``.

    Example:
        >>> m = classification_metrics(torch.eye(3)[[0, 1, 2, 2]], torch.tensor([0, 1, 2, 1]))
        >>> m["acc"]
        0.75
    """
    x, y = _as_numpy(logits, "logits"), _as_numpy(labels, "labels")
    _check_logits_labels(x.shape, y.shape, binary=False)
    _check_finite(x, "logits")
    y = _int_labels(y, 0, x.shape[1], "labels")
    pred = np.argmax(x, axis=1)
    return {"acc": _accuracy(y, pred), "f1": weighted_f1(y, pred)}
