r"""Paired comparisons of two models evaluated on identical masks, across seeds, and headroom.

Two :class:`~promptkit.evaluation.protocol.ProtocolResult` objects from the same test split and the
same protocol seed saw the very same masks, so their difference can be measured *per sample*:

* **Per-sample accuracies** (``non0_acc2``, ``has0_acc2``, CH-SIMS ``acc2``, classification ``acc``,
  IEMOCAP ``avg_acc`` and ``<emotion>_acc``): with :math:`c^A_i, c^B_i \in [0, 1]` each model's
  correctness on scored sample :math:`i` and :math:`d_i = c^A_i - c^B_i`,

  .. math:: \hat\Delta = 100\,\bar d, \qquad \mathrm{SE} = 100\,\frac{\mathrm{sd}(d)}{\sqrt n}

  (sd with ``ddof=1``), and a seeded paired-bootstrap percentile CI over the :math:`n` samples.
  ``non0_acc2`` scores only samples whose label is not exactly 0, as the metric does.
* **Any other metric** (F1, MAE, corr, acc5/acc7): a seeded paired bootstrap - the same resampled test
  samples for both models - of the metric difference; the estimate is the full-sample difference,
  ``se`` the bootstrap sd, the CI its percentiles. Draws where the metric is NaN are dropped.

Accuracies and F1 are in percentage points (``unit="points"``); MAE and corr in their own units.
The setting ``"avg"`` averages the incomplete cases *per sample* (per draw for the bootstrap), so its
estimate equals the difference of the two results' ``cases["avg"]``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from ..metrics import (
    EMOTIONS,
    KINDS,
    metric_kind,
    pearson,
    weighted_f1,
)
from .protocol import AVG, COMPLETE, ProtocolResult

__all__ = [
    "PairedDifference",
    "achievable_se",
    "check_precision",
    "compare_protocols",
    "headroom",
    "paired_difference",
    "per_sample_correct",
    "share_recovered",
    "summarize_over_seeds",
]

def _mosi_fast(metric: str) -> Callable[[Any, Any], float] | None:
    """One MOSI/MOSEI metric alone, as :func:`regression_metrics` defines it (bootstrap speed)."""

    def arrays(p: Any, t: Any) -> tuple[np.ndarray, np.ndarray]:
        p, t = np.asarray(p, dtype=np.float32).reshape(-1), np.asarray(t, dtype=np.float32).reshape(-1)
        return p, t

    def non0_f1(p: Any, t: Any) -> float:
        p, t = arrays(p, t)
        nz = t != 0
        return weighted_f1(t[nz] > 0, p[nz] > 0)

    def has0_f1(p: Any, t: Any) -> float:
        p, t = arrays(p, t)
        return weighted_f1(t >= 0, p >= 0)

    def mae(p: Any, t: Any) -> float:
        p, t = arrays(p, t)
        return float(np.mean(np.abs(p.astype(np.float64) - t.astype(np.float64))))

    return {"non0_f1": non0_f1, "has0_f1": has0_f1, "mae": mae, "corr": lambda p, t: pearson(p, t)}.get(metric)


def _metric_fn(kind: str, metric: str) -> Callable[[Any, Any], float]:
    fast = _mosi_fast(metric) if metric_kind(kind).nonzero_accuracy else None
    if fast is not None:
        return fast
    full = metric_kind(kind).function
    return lambda p, t: full(p, t)[metric]


@dataclass(frozen=True)
class PairedDifference:
    """Model A minus model B on one setting and one metric.

    Attributes:
        setting: a setting key (``"{a}"``, ``"complete"``, ``"rate=0.5"``) or ``"avg"``.
        metric: the metric key, e.g. ``"non0_acc2"``.
        mean: the estimated difference A - B (points for accuracies and F1).
        se: its standard error (per-sample formula, or the bootstrap sd).
        ci_low, ci_high: the paired-bootstrap percentile interval at ``level``.
        n: samples scored (``non0_acc2``: those with a non-zero label).
        method: ``"per-sample"`` or ``"bootstrap"``.
        unit: ``"points"`` or ``""`` (the metric's own unit).
    """

    setting: str
    metric: str
    mean: float
    se: float
    ci_low: float
    ci_high: float
    n: int
    method: str
    unit: str
    level: float = 0.95
    n_boot: int = 1000
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __format__(self, spec: str) -> str:
        """``f"{d:.2f}"`` → ``"+1.23 ± 0.45"``."""
        spec = spec or ".2f"
        return f"{self.mean:+{spec}} ± {self.se:{spec}}"


# --------------------------------------------------------------------------- per-sample scores


def per_sample_correct(
    kind: str, metric: str, preds: torch.Tensor, labels: torch.Tensor
) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-sample correctness behind an accuracy metric, or ``None`` if it is not one such metric.

    Args:
        kind: the metric kind (``"mosi"``, ``"sims"``, ``"classification"``, ...).
        preds: ``(N,)`` scores, ``(N, C)`` logits or IEMOCAP ``(N, 8)`` / ``(N, 4, 2)`` logits.
        labels: ``(N,)`` or IEMOCAP ``(N, 4)``.

    Returns:
        ``(correct (N,) float64 in [0, 1], scored (N,) bool)``: the metric is ``correct[scored].mean()``.
    """
    p, t = preds.detach().cpu().numpy(), labels.detach().cpu().numpy()
    if metric_kind(kind).nonzero_accuracy and metric in ("non0_acc2", "has0_acc2"):
        p, t = p.reshape(-1).astype(np.float32), t.reshape(-1).astype(np.float32)
        if metric == "non0_acc2":
            return ((p > 0) == (t > 0)).astype(np.float64), t != 0
        return ((p >= 0) == (t >= 0)).astype(np.float64), np.ones(t.shape, bool)
    if kind == "sims" and metric == "acc2":  # bins [-1, 0], (0, 1]; clipping keeps the sign
        p, t = p.reshape(-1).astype(np.float32), t.reshape(-1).astype(np.float32)
        return ((p > 0) == (t > 0)).astype(np.float64), np.ones(t.shape, bool)
    if kind == "classification" and metric == "acc":
        return (p.argmax(1) == t).astype(np.float64), np.ones(t.shape, bool)
    if kind == "iemocap_binary":
        hits = (p.reshape(p.shape[0], len(EMOTIONS), 2).argmax(2) == t).astype(np.float64)  # (N, 4)
        scored = np.ones(t.shape[0], bool)
        if metric == "avg_acc":
            return hits.mean(1), scored
        if metric.endswith("_acc") and metric[:-4] in EMOTIONS:
            return hits[:, EMOTIONS.index(metric[:-4])], scored
    return None


def _unit(metric: str) -> tuple[str, float]:
    return ("points", 100.0) if ("acc" in metric or "f1" in metric) else ("", 1.0)


def _check_pair(a: ProtocolResult, b: ProtocolResult, settings: Sequence[str]) -> None:
    for name, r in (("a", a), ("b", b)):
        if r.labels is None or not r.predictions:
            raise ValueError(
                f"result {name} has no per-sample predictions (read from JSON?); pair results straight from "
                "evaluate_protocol"
            )
    if a.kind and b.kind and a.kind != b.kind:
        raise ValueError(f"cannot pair results of different metric kinds: {a.kind!r} and {b.kind!r}")
    if a.labels.shape != b.labels.shape:
        raise ValueError(
            f"cannot pair results on different samples: labels differ in shape ({tuple(a.labels.shape)} and "
            f"{tuple(b.labels.shape)}); evaluate both models on the same test split"
        )
    if not torch.equal(a.labels, b.labels):
        n_diff = int((a.labels != b.labels).reshape(a.labels.shape[0], -1).any(1).sum())
        raise ValueError(
            f"cannot pair results on different samples: labels differ on {n_diff} of {a.labels.shape[0]} samples; "
            "evaluate both models on the same test split"
        )
    for s in settings:
        for name, r in (("a", a), ("b", b)):
            if s not in r.predictions:
                raise ValueError(f"result {name} has no predictions for setting {s!r}; it has {sorted(r.predictions)}")


def _bootstrap_ci(draws: np.ndarray, level: float) -> tuple[float, float]:
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return math.nan, math.nan
    q = 100 * (1 - level) / 2
    lo, hi = np.percentile(draws, [q, 100 - q])
    return float(lo), float(hi)


def paired_difference(
    a: ProtocolResult,
    b: ProtocolResult,
    setting: str,
    metric: str,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> PairedDifference:
    """Model ``a`` minus model ``b`` on ``setting`` (or ``"avg"``) for ``metric``; see the module docstring.

    Raises:
        ValueError: if either result lacks predictions or the setting, or their labels differ.
    """
    kind = a.kind or b.kind
    if kind not in KINDS:
        raise ValueError(f"unknown metric kind {kind!r} on the results; expected one of {sorted(KINDS)}")
    settings = a.case_names if setting == AVG else [setting]
    if setting == AVG and not settings:
        raise ValueError("setting 'avg' needs incomplete cases, and result a has none")
    _check_pair(a, b, settings)
    labels = a.labels
    unit, scale = _unit(metric)
    rng = np.random.default_rng(seed)
    per_sample = [per_sample_correct(kind, metric, a.predictions[s], labels) for s in settings]
    if per_sample[0] is not None:
        scored = per_sample[0][1]
        d = np.mean(
            [ca - per_sample_correct(kind, metric, b.predictions[s], labels)[0] for (ca, _), s in zip(per_sample, settings)],
            axis=0,
        )[scored]
        n = int(d.size)
        if n == 0:
            raise ValueError(f"{metric} scores no sample of this split (every label is 0?)")
        se = float(scale * d.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
        draws = scale * d[rng.integers(0, n, size=(n_boot, n))].mean(1)
        lo, hi = _bootstrap_ci(draws, level)
        return PairedDifference(setting, metric, float(scale * d.mean()), se, lo, hi, n, "per-sample", unit, level, n_boot, seed)

    known = metric_kind(kind).function(a.predictions[settings[0]], labels)
    if metric not in known:
        raise ValueError(f"metric {metric!r} is not one of {kind!r}'s metrics: {sorted(known)}")
    fn = _metric_fn(kind, metric)
    pa = {s: a.predictions[s].detach().cpu().numpy() for s in settings}
    pb = {s: b.predictions[s].detach().cpu().numpy() for s in settings}
    y_all = labels.detach().cpu().numpy()

    def diff(idx: np.ndarray | slice) -> float:
        y = y_all[idx]
        return scale * float(np.mean([fn(pa[s][idx], y) - fn(pb[s][idx], y) for s in settings]))

    n = int(labels.shape[0])
    draws = np.array([diff(rng.integers(0, n, size=n)) for _ in range(n_boot)], dtype=np.float64)
    finite = draws[np.isfinite(draws)]
    se = float(finite.std(ddof=1)) if finite.size > 1 else math.nan
    lo, hi = _bootstrap_ci(draws, level)
    return PairedDifference(setting, metric, diff(slice(None)), se, lo, hi, n, "bootstrap", unit, level, n_boot, seed)


def compare_protocols(
    a: ProtocolResult,
    b: ProtocolResult,
    metric: str,
    settings: Sequence[str] | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, PairedDifference]:
    """:func:`paired_difference` of ``a`` - ``b`` for each setting.

    Args:
        settings: default: ``a``'s incomplete cases, ``"avg"``, ``"complete"``, then every missing-rate
            setting both results have.
    """
    if settings is None:
        rates = [k for k in a.predictions if k.startswith("rate=") and k in b.predictions]
        settings = [*a.case_names, *([AVG] if a.case_names else []), COMPLETE, *rates]
    return {s: paired_difference(a, b, s, metric, n_boot=n_boot, seed=seed, level=level) for s in settings}


# --------------------------------------------------------------------------- across seeds, headroom


def summarize_over_seeds(values: Sequence[float]) -> dict[str, Any]:
    r"""Mean, sample sd (``ddof=1``) and :math:`\mathrm{se} = \mathrm{sd} / \sqrt k` over ``k`` seeds.

    With one seed ``std`` and ``se`` are NaN (not 0): one run says nothing about the spread between
    seeds. Python's ``json`` writes NaN as ``NaN``.

    Returns:
        ``{"mean", "se", "std", "per_seed"}``, the format the benchmarks write.

    Example:
        >>> summarize_over_seeds([1.0, 2.0, 3.0])["se"]  # sd 1 / sqrt(3)
        0.5773502691896258
    """
    v = np.asarray([float(x) for x in values], dtype=np.float64)
    if v.size == 0:
        raise ValueError("summarize_over_seeds needs at least one value")
    std = float(v.std(ddof=1)) if v.size > 1 else math.nan
    return {"mean": float(v.mean()), "se": std / math.sqrt(v.size), "std": std, "per_seed": v.tolist()}


def _need(keys: Sequence[str], other: Mapping[str, float], name: str) -> None:
    missing = [k for k in keys if k not in other]
    if missing:
        raise ValueError(f"{name} lacks case(s) {missing}; it has {sorted(other)}")


def headroom(ceiling: Mapping[str, float], baseline: Mapping[str, float]) -> dict[str, float]:
    """Per case, ``ceiling - baseline``: how much a method could gain over the baseline at most.

    The cases are ``baseline``'s keys; ``ceiling`` must have each (extra keys are ignored).
    """
    _need(list(baseline), ceiling, "ceiling")
    return {c: float(ceiling[c]) - float(baseline[c]) for c in baseline}


def share_recovered(
    method: Mapping[str, float], baseline: Mapping[str, float], ceiling: Mapping[str, float]
) -> dict[str, float]:
    r"""Per case, the share of the headroom a method recovers.

    .. math:: s_c = \frac{m_c - b_c}{u_c - b_c}, \quad \text{NaN where } u_c - b_c \le 0

    (1 = the method reaches the ceiling, 0 = no gain, < 0 = worse than the baseline). The cases are
    ``method``'s keys; ``baseline`` and ``ceiling`` must have each.
    """
    _need(list(method), baseline, "baseline")
    _need(list(method), ceiling, "ceiling")
    out = {}
    for c in method:
        room = float(ceiling[c]) - float(baseline[c])
        out[c] = (float(method[c]) - float(baseline[c])) / room if room > 0 else math.nan
    return out


# --------------------------------------------------------------------------- precision checks


def achievable_se(n_scored: int, discordance: float = 0.25) -> float:
    r"""An upper bound (points) on the SE of a paired accuracy difference on ``n_scored`` samples.

    With :math:`d_i \in \{-1, 0, 1\}` and a share ``discordance`` of samples on which the two models
    disagree in correctness, :math:`\mathrm{var}(d) \le E[d^2] = \text{discordance}`, so

    .. math:: \mathrm{SE} \le 100 \sqrt{\text{discordance} / n}.

    Example:
        >>> achievable_se(100)  # 100 * sqrt(0.25 / 100)
        5.0
    """
    if n_scored <= 0:
        raise ValueError(f"n_scored must be positive, got {n_scored}")
    if not 0 <= discordance <= 1:
        raise ValueError(f"discordance is a share in [0, 1], got {discordance}")
    return 100.0 * math.sqrt(discordance / n_scored)


def check_precision(n_scored: int, max_se: float, what: str = "paired accuracy difference", discordance: float = 0.25) -> float:
    """Warn (``UserWarning``) when ``n_scored`` samples cannot give an SE of ``max_se`` points.

    Returns:
        :func:`achievable_se` ``(n_scored, discordance)``.
    """
    se = achievable_se(n_scored, discordance)
    if se > max_se:
        need = math.ceil(1e4 * discordance / max_se**2)
        warnings.warn(
            f"{what}: a split of {n_scored} scored samples gives an SE of up to {se:.2f} points "
            f"(at {discordance:.0%} discordant samples), above the requested {max_se:.2f} points; "
            f"that needs about {need} samples",
            UserWarning,
            stacklevel=2,
        )
    return se
