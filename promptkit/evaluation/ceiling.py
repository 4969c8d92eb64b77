"""Per-case ceilings: what the available modalities of each case allow, by ridge regression.

For every case (set of available modalities) a ridge regression is fit on the training split's
time-averaged features of exactly those modalities (padding steps excluded, standardised with the
training statistics), its penalty chosen on the validation split, and scored once on the test
split. It never sees the missing modalities, so it is the lower-bound model of the paper (LB: one
model per case, trained on that case) in its simplest form. On the embedded synthetic data, whose
labels are linear in the latent factors the time-averaged features mix, it is close to the best a
model can do with those modalities; on real data a trained network may beat it, so read it as a
reference level, not a bound.

``headroom = ceiling - substitution`` per case says how much a method that handles the missing
modalities can add over zero-filling them; a method's share recovered is
``(method - substitution) / headroom``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..data.tokens import bag_of_ids
from ..metrics import metric_kind as metric_kind_record
from ..metrics import metrics_for
from ..modalities import ModalitySet

PENALTIES: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)


def time_average(x: torch.Tensor) -> np.ndarray:
    """``(N, T, D)`` → ``(N, D)``: the mean over the steps that are not all-zero padding (token ids
    ``(N, 3, T)``: their bag of ids, :func:`~promptkit.data.tokens.bag_of_ids`)."""
    if not x.is_floating_point():
        return bag_of_ids(x)
    x = x.double()
    valid = (x.abs().amax(-1) > 0).double()  # (N, T)
    total = (x * valid[..., None]).sum(1)
    return (total / valid.sum(1, keepdim=True).clamp(min=1.0)).numpy()


def _ridge(x: np.ndarray, y: np.ndarray, penalty: float) -> np.ndarray:
    """Weights ``(D + 1, K)`` (last row the intercept) of ``min |[x 1] w - y|^2 + penalty |w[:-1]|^2``."""
    xa = np.hstack([x, np.ones((len(x), 1))])
    reg = penalty * np.eye(xa.shape[1])
    reg[-1, -1] = 0.0
    return np.linalg.solve(xa.T @ xa + reg, xa.T @ y)


def _predict(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return np.hstack([x, np.ones((len(x), 1))]) @ w


def ridge_ceilings(data: Any, metric_kind: str, penalties: Sequence[float] = PENALTIES) -> dict[str, dict[str, Any]]:
    """Per case name (``"{a}"``, ..., ``"complete"``): test metrics of a ridge fit on that case's modalities.

    Regression data only (labels ``(N,)``). Each entry holds the metrics and the chosen penalty.
    """
    if data.task != "regression":
        raise ValueError(f"ridge ceilings need regression data, got {data.task}")
    splits = {s: data.splits[s] for s in ("train", "valid", "test")}
    feats = {s: {m: time_average(d.features[m]) for m in data.modalities} for s, d in splits.items()}
    labels = {s: d.labels.double().reshape(-1, 1).numpy() for s, d in splits.items()}
    stats = {m: (f.mean(0), f.std(0) + 1e-8) for m, f in feats["train"].items()}
    z = {s: {m: (f - stats[m][0]) / stats[m][1] for m, f in fs.items()} for s, fs in feats.items()}
    kind = metric_kind_record(metric_kind)
    primary = kind.accuracy if kind.nonzero_accuracy else None
    out: dict[str, dict[str, Any]] = {}
    modalities = ModalitySet(data.modalities)
    for case in modalities.cases:
        x = {s: np.hstack([z[s][m] for m in case.available]) for s in splits}
        best = None
        for pen in penalties:
            w = _ridge(x["train"], labels["train"], pen)
            err = float(np.abs(_predict(x["valid"], w) - labels["valid"]).mean())
            if best is None or err < best[0]:
                best = (err, pen, w)
        _, pen, w = best
        metric = metrics_for(metric_kind)
        metric.update(torch.from_numpy(_predict(x["test"], w)[:, 0]).float(), splits["test"].labels)
        scores = {k: float(v) for k, v in metric.compute().items()}
        name = "complete" if case.complete else case.name
        out[name] = {"metrics": scores, "penalty": pen, "primary": primary}
    return out
