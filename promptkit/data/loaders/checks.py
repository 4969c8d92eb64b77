"""Features and labels checked and converted: float32 ``(N, T, D)`` features, labels by kind."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ..limits import SizeBudget, features_cost, labels_cost
from .arrays import _as_array
from .errors import AudioInfWarning, DataFormatError

_CLASS_ID_CEILING = 2**53
"""Class ids from here up do not survive float64 or int64 unchanged; the class limit refuses far fewer."""


def _check_features(x: Any, where: str, split: str, modality: str, key: str | None = None,
                    budget: SizeBudget | None = None) -> np.ndarray:
    """Features as float32 ``(N, T, D)``; audio ``-inf`` → 0 with a warning, other non-finite → error.

    ``budget`` (when given) is charged for the float32 copy and the finite check's mask first."""
    key = key or modality
    loc = f"split '{split}', key '{key}'" + (f" ({modality})" if key != modality else "")
    at = f"{where}: {loc}"
    arr = _as_array(x, where, loc, "a numeric array (N, T, D)", budget)
    if arr.dtype.kind not in "fiub":
        raise DataFormatError(f"{at}: expected a numeric array (N, T, D), got dtype {arr.dtype}")
    if arr.ndim != 3:
        raise DataFormatError(f"{at}: expected an array of rank 3 (N, T, D), got shape {arr.shape}")
    if arr.shape[0] and arr.shape[2] == 0:
        raise DataFormatError(
            f"{at}: modality '{modality}' has feature size D = 0 (shape {arr.shape}); a modality needs at least one "
            "feature, so leave it out with modalities=[...]"
        )
    if arr.shape[0] and arr.shape[1] == 0:
        raise DataFormatError(
            f"{at}: modality '{modality}' has sequence length T = 0 (shape {arr.shape}); a modality needs at least "
            "one time step, so leave it out with modalities=[...]"
        )
    copy = arr.dtype != np.float32 or not arr.flags.writeable
    if budget is not None:
        budget.charge(features_cost(arr.size, copy),
                      f"{loc} (shape {arr.shape}, {arr.dtype}) as float32{' (a copy)' if copy else ''}, with its "
                      "finite check,", verb="needs")
    arr = np.array(arr, dtype=np.float32, copy=copy)
    if modality == "audio":
        neg_inf = np.isneginf(arr)
        count = int(neg_inf.sum())
        if count:
            arr[neg_inf] = 0.0
            warnings.warn(
                f"{where}: split '{split}': replaced {count} -inf audio value(s) with 0 "
                "(a known quirk of the MulT CMU-MOSI/MOSEI audio features)",
                AudioInfWarning,
                stacklevel=2,
            )
    finite = np.isfinite(arr).all(axis=(1, 2))
    if not finite.all():
        bad = np.flatnonzero(~finite)
        n_vals = int((~np.isfinite(arr)).sum())
        raise DataFormatError(
            f"{where}: split '{split}', modality '{modality}' has {n_vals} NaN/inf value(s) in sample index(es) "
            f"{bad[:10].tolist()}{' ...' if len(bad) > 10 else ''}; clean the file (only -inf in audio is "
            "replaced automatically)"
        )
    return arr


def _normalize_labels(y: Any, where: str, split: str, task: str | None, key: str = "labels",
                      budget: SizeBudget | None = None) -> tuple[np.ndarray, str]:
    """Labels → (array, kind): float ``(N,)`` "regression", long ``(N,)`` "classes" or long ``(N, K)`` "binary".

    ``budget`` (when given) is charged for the copies and checks first."""
    loc = f"split '{split}', key '{key}'"
    at = f"{where}: {loc}"
    arr = _as_array(y, where, loc, "labels (N,), (N, 1, 1) or (N, K, 2)", budget)
    if arr.dtype.kind not in "fiub":
        raise DataFormatError(f"{at}: expected numeric labels, got dtype {arr.dtype}")
    if budget is not None:
        budget.charge(labels_cost(arr.size), f"{loc} (shape {arr.shape}, {arr.dtype}) as labels, with their checks,",
                      verb="needs")
    if arr.dtype.kind == "b":
        arr = arr.astype(np.int64)
    if arr.ndim == 0:
        raise DataFormatError(f"{at}: expected an array (N,), (N, 1, 1) or (N, K, 2), got a scalar")
    if not np.isfinite(arr).all():
        bad = np.flatnonzero(~np.isfinite(arr.reshape(len(arr), -1)).all(axis=1))
        raise DataFormatError(f"{at}: NaN/inf label(s) in sample index(es) {bad[:10].tolist()}")
    if arr.ndim > 1 and all(s == 1 for s in arr.shape[1:]):
        arr = arr.reshape(len(arr))
    if arr.ndim == 3 and arr.shape[2] == 2:  # one-hot per binary task: IEMOCAP (N, 4, 2)
        if task == "regression":
            raise DataFormatError(f"{at}: one-hot labels {arr.shape} cannot be used for regression")
        bad = np.flatnonzero(~(np.isin(arr, (0, 1)).all(axis=(1, 2)) & (arr.sum(axis=2) == 1).all(axis=1)))
        if len(bad):
            raise DataFormatError(
                f"{at}: expected one-hot pairs along the last axis of {arr.shape}, sample index(es) "
                f"{bad[:10].tolist()} are not one-hot (first: {arr[bad[0]].tolist()})"
            )
        return arr.argmax(axis=2).astype(np.int64), "binary"
    if arr.ndim == 2:  # (N, K) 0/1 per binary task
        if task == "regression" or not np.isin(arr, (0, 1)).all():
            raise DataFormatError(
                f"{at}: labels of shape {arr.shape} must be 0/1 per binary task for classification; "
                "regression labels are (N,) or (N, 1, 1)"
            )
        return arr.astype(np.int64), "binary"
    if arr.ndim != 1:
        raise DataFormatError(f"{at}: expected shape (N,), (N, 1, 1), (N, K) or (N, K, 2), got {arr.shape}")
    classify = task == "classification" or (task is None and arr.dtype.kind in "iub")
    if not classify:
        return arr.astype(np.float32), "regression"
    if not (np.equal(np.round(arr), arr).all() and (arr >= 0).all()):
        bad = np.flatnonzero(~((np.round(arr) == arr) & (arr >= 0)))
        raise DataFormatError(
            f"{at}: class labels must be non-negative integers, sample index(es) {bad[:10].tolist()} "
            f"are not (first: {arr[bad[0]]})"
        )
    if arr.size and arr.max() >= _CLASS_ID_CEILING:  # int64 would wrap it; no head has this many classes
        i = int(np.argmax(arr))
        raise DataFormatError(
            f"{at}: class id {arr[i]} (sample index {i}) is not a plausible class id: class ids run from 0 to the "
            "number of classes - 1"
        )
    return arr.astype(np.int64), "classes"


def _check_token_ids(x: Any, where: str, split: str, key: str, budget: SizeBudget | None = None) -> np.ndarray:
    """MMSA's ``text_bert`` as int64 ``(N, 3, T)`` (ids, attention mask, segment ids); stored as
    integers or as floats holding integers (MMSA's own files keep them as floats). The id range
    against the vocabulary is checked once it is known (:func:`~promptkit.data.tokens.check_tokens`).

    ``budget`` (when given) is charged for the int64 copy and the integrality check first."""
    loc = f"split '{split}', key '{key}'"
    at = f"{where}: {loc}"
    arr = _as_array(x, where, loc, "token ids (N, 3, T)", budget)
    if arr.dtype.kind not in "fiu":
        raise DataFormatError(f"{at}: expected token ids (N, 3, T) as integers, got dtype {arr.dtype}")
    if arr.ndim != 3 or arr.shape[1] != 3:
        raise DataFormatError(
            f"{at}: expected token ids of shape (N, 3, T) (ids, attention mask, segment ids), got shape {arr.shape}"
        )
    if arr.shape[0] and arr.shape[2] == 0:
        raise DataFormatError(f"{at}: token sequences of length T = 0 (shape {arr.shape})")
    if budget is not None:
        budget.charge(labels_cost(arr.size), f"{loc} (shape {arr.shape}, {arr.dtype}) as int64 token ids,",
                      verb="needs")
    if arr.dtype.kind == "f":
        bad = ~(np.isfinite(arr) & (np.round(arr) == arr)).all(axis=(1, 2))
        if bad.any():
            rows = np.flatnonzero(bad)
            raise DataFormatError(f"{at}: token ids must be whole numbers; sample index(es) {rows[:10].tolist()} "
                                  "hold fractions or NaN/inf")
        if np.abs(arr).max(initial=0) >= _CLASS_ID_CEILING:
            raise DataFormatError(f"{at}: token ids beyond 2**53 are not ids")
    arr = arr.astype(np.int64)
    neg = (arr < 0).any(axis=(1, 2))
    if neg.any():
        raise DataFormatError(f"{at}: negative token ids or mask values in sample index(es) "
                              f"{np.flatnonzero(neg)[:10].tolist()}")
    return arr
