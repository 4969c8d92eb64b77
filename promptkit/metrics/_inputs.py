"""What the metric functions accept: array types, shapes, finite values, integer labels.

Every check raises a ``ValueError`` (``TypeError`` for a non-numeric array) that names the argument,
the shape or values it got and what it expected.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

EMOTIONS: tuple[str, ...] = ("neutral", "happy", "sad", "angry")
"""IEMOCAP's four binary tasks, in MulT's order (its ``labels[:, k]`` and ``logits[:, k, :]``)."""

ArrayLike = np.ndarray | torch.Tensor | Sequence[float]


def _as_numpy(x: ArrayLike, name: str) -> np.ndarray:
    """Host numpy copy of ``x``; half / bfloat16 tensors become float32."""
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        return x.cpu().numpy()
    arr = np.asarray(x)
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise TypeError(f"{name} must be numeric (numpy array or torch tensor), got dtype {arr.dtype}")
    return arr


def _vector_length(shape: Sequence[int], name: str) -> int:
    """N for a shape ``(N,)`` or ``(N, 1)``, else a ValueError naming the shape."""
    shape = tuple(shape)
    if len(shape) == 1 or (len(shape) == 2 and shape[1] == 1):
        return shape[0]
    raise ValueError(f"{name} must have shape (N,) or (N, 1), got {shape}")


def _check_vector_pair(pred_shape: Sequence[int], truth_shape: Sequence[int]) -> None:
    n_pred = _vector_length(pred_shape, "pred")
    n_truth = _vector_length(truth_shape, "truth")
    if n_pred != n_truth:
        raise ValueError(f"pred and truth must have the same length, got {n_pred} and {n_truth}")
    if n_pred == 0:
        raise ValueError("metrics need at least one sample, got empty pred and truth")


def _check_logits_labels(logits_shape: Sequence[int], labels_shape: Sequence[int], binary: bool) -> None:
    """Shapes for ``(N, C)`` + ``(N,)`` (classification) or ``(N, 4, 2)``/``(N, 8)`` + ``(N, 4)`` (IEMOCAP)."""
    logits_shape, labels_shape = tuple(logits_shape), tuple(labels_shape)
    k = len(EMOTIONS)
    if binary:
        if logits_shape[1:] not in ((k, 2), (2 * k,)):
            raise ValueError(f"logits must have shape (N, {k}, 2) or (N, {2 * k}), got {logits_shape}")
        if len(labels_shape) != 2 or labels_shape[1] != k:
            raise ValueError(f"labels must have shape (N, {k}), got {labels_shape}")
    else:
        if len(logits_shape) != 2 or logits_shape[1] < 2:
            raise ValueError(f"logits must have shape (N, C) with C >= 2, got {logits_shape}")
        if len(labels_shape) != 1:
            raise ValueError(f"labels must have shape (N,), got {labels_shape}")
    if logits_shape[0] != labels_shape[0]:
        raise ValueError(f"logits and labels must have the same N, got {logits_shape[0]} and {labels_shape[0]}")
    if logits_shape[0] == 0:
        raise ValueError("metrics need at least one sample, got empty logits and labels")


def _check_finite(arr: np.ndarray, name: str) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        first = np.flatnonzero(bad)[:5].tolist()
        raise ValueError(f"{name} contains {int(bad.sum())} NaN/inf value(s) (flat indices {first}...); "
                         "metrics need finite values")


def _float_pair(pred: ArrayLike, truth: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(N,)`` float arrays in their common dtype (float32 stays float32, as in MMSA)."""
    p, t = _as_numpy(pred, "pred"), _as_numpy(truth, "truth")
    _check_vector_pair(p.shape, t.shape)
    dtype = np.result_type(p.dtype, t.dtype, np.float32)
    p, t = p.reshape(-1).astype(dtype), t.reshape(-1).astype(dtype)
    _check_finite(p, "pred")
    _check_finite(t, "truth")
    return p, t


def _int_labels(labels: np.ndarray, low: int, high: int, name: str) -> np.ndarray:
    """``labels`` as int64 after checking every value is an integer in ``[low, high)``."""
    if np.issubdtype(labels.dtype, np.floating):
        _check_finite(labels, name)
        if not np.all(labels == np.round(labels)):
            raise ValueError(f"{name} must be integer class ids, got non-integer values")
    out = labels.astype(np.int64)
    if out.size and (out.min() < low or out.max() >= high):
        raise ValueError(f"{name} must lie in [{low}, {high - 1}], got values in [{out.min()}, {out.max()}]")
    return out
