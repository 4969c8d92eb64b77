"""A file's values as numpy arrays: nested lists stacked, what stacking allocates counted first."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..limits import SizeBudget
from .errors import DataFormatError

_MAX_NDIM = 64
"""numpy's most dimensions: a deeper nested list cannot be stacked."""
_SCALAR_DTYPES = {bool: np.dtype(bool), int: np.dtype(np.int64), float: np.dtype(np.float64),
                  complex: np.dtype(np.complex128)}
_SCALAR_TYPES = frozenset(_SCALAR_DTYPES)


def _as_array(x: Any, where: str, loc: str, expected: str, budget: SizeBudget | None = None) -> np.ndarray:
    """``np.asarray(x)``, with a ragged nested list (or anything numpy cannot stack) an error at
    ``where: loc``; what stacking allocates is charged to ``budget`` first (see :func:`_stacked_size`)."""
    if isinstance(x, np.ndarray):
        return x
    at = f"{where}: {loc}"
    if budget is not None:
        numel, itemsize, dtype, shape = _stacked_size(x, at)
        budget.charge(
            numel * itemsize,
            f"{loc} (a nested {type(x).__name__} stacking to shape {shape} of {dtype}, each repeated reference "
            "counted)" if isinstance(x, (list, tuple)) else f"{loc} (a {type(x).__name__} made an array of {dtype})",
            verb="needs",
        )
    try:
        return np.asarray(x)
    except (ValueError, TypeError) as e:
        ragged = isinstance(x, (list, tuple)) and "inhomogeneous" in str(e)
        what = ("a ragged nested list (its rows differ in length)" if ragged
                else f"a {type(x).__name__} numpy cannot stack")
        raise DataFormatError(f"{at}: expected {expected}, got {what} ({' '.join(str(e).split())[:200]})") from None


def _stacked_size(x: Any, at: str) -> tuple[int, int, np.dtype, tuple[int, ...]]:
    """``(elements, itemsize, dtype, shape)`` of what ``np.asarray(x)`` would allocate, found without
    allocating.

    Elements are counted one by one, a list or array referenced many times once per reference
    (``[row] * 10**6`` stacks a million copies of ``row``), so that a pickle whose memo shares one
    list between many places is counted at the size stacking gives it. The dtype is numpy's
    promotion of the leaves' dtypes and ``itemsize`` at least its item size (an upper bound: Python
    scalars count 8 bytes, numbers among strings 128); ``shape`` follows the first element at each
    level (for messages). Each distinct list is walked once, so the walk takes time in proportion
    to the file's size, not to what it stacks to.

    Raises:
        DataFormatError: a list that contains itself, or nesting deeper than numpy's 64 dimensions.
    """
    sizes: dict[int, int] = {}  # id(list) -> elements it stacks to
    open_lists: set[int] = set()
    dtypes: set[np.dtype] = set()
    widest = {str: 0, bytes: 0}

    def leaf(v: Any) -> int:
        if isinstance(v, np.ndarray):
            dtypes.add(v.dtype)
            return v.size
        if isinstance(v, np.generic):  # numpy scalars, np.str_ and np.bytes_ included
            dtypes.add(v.dtype)
            return 1
        if type(v) in _SCALAR_DTYPES:
            dtypes.add(_SCALAR_DTYPES[type(v)])
            return 1
        if isinstance(v, (str, bytes)):
            kind = str if isinstance(v, str) else bytes
            widest[kind] = max(widest[kind], len(v))
            return 1
        if isinstance(v, bytearray):  # numpy reads its buffer: one uint8 per byte
            dtypes.add(np.dtype(np.uint8))
            return len(v)
        dtypes.add(np.dtype(object))
        return 1

    def walk(v: Any, depth: int) -> int:
        if not isinstance(v, (list, tuple)):
            return leaf(v)
        key = id(v)
        if key in sizes:
            return sizes[key]
        if key in open_lists:
            raise DataFormatError(f"{at}: expected an array, got a {type(v).__name__} that contains itself")
        if depth >= _MAX_NDIM:
            raise DataFormatError(f"{at}: expected an array, got lists nested more than {_MAX_NDIM} deep")
        types = set(map(type, v))
        if types <= _SCALAR_TYPES:  # the common innermost level: no call per element
            dtypes.update(_SCALAR_DTYPES[t] for t in types)
            n = len(v)
        else:
            open_lists.add(key)
            n = sum(walk(item, depth + 1) for item in v)
            open_lists.discard(key)
        sizes[key] = n
        return n

    numel = walk(x, 0)
    mixed_text = any(widest.values()) and bool(dtypes)
    for kind, code in ((str, "U"), (bytes, "S")):
        if widest[kind]:
            dtypes.add(np.dtype(f"{code}{widest[kind]}"))
    try:
        dtype = np.result_type(*dtypes) if dtypes else np.dtype(np.float64)
    except TypeError:  # numpy would make an object array
        dtype = np.dtype(object)
    itemsize = max([dtype.itemsize, *(d.itemsize for d in dtypes)])
    if mixed_text:  # numbers among strings become 32-character strings
        itemsize = max(itemsize, 128)
    shape: list[int] = []
    v = x
    while isinstance(v, (list, tuple)) and len(shape) < _MAX_NDIM:
        shape.append(len(v))
        if not v:
            break
        v = v[0]
    if isinstance(v, np.ndarray):
        shape.extend(v.shape)
    return numel, itemsize, dtype, tuple(shape)
