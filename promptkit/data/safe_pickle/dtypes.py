"""Checked numpy dtypes: only plain kinds, and a fresh dtype built from a checked pickled state.

A pickled dtype is ``numpy.dtype(spec, align, copy)`` followed by ``BUILD`` with numpy's state
tuple; numpy never applies the file's state here: :meth:`_DtypeChecks._dtype_from_state` builds
a new dtype with numpy's public constructor from the checked fields, so the file cannot set the
flags, field offsets or item size that numpy trusts.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from .context import _CheckContext, _describe, _is_int
from .errors import PickleTooLargeError

_SPEC = re.compile(r"[biufcSUVO][0-9]{1,12}")
"""The dtype strings numpy writes into pickles (``'f4'``, ``'U3'``, ``'V8'``, ``'O8'``, ...)."""
_PLAIN_KINDS = "biufcSUV"


class _DtypeChecks(_CheckContext):
    """The dtype handler (``numpy.dtype``) and the dtype and shape checks the array handlers share."""

    _unbuilt_dtypes: dict[int, tuple[np.dtype, list[Any]]]  # dtype → memo keys holding it, set by the unpickler

    def _shape(self, shape: Any, what: str) -> tuple[int, ...]:
        if isinstance(shape, list):
            shape = tuple(shape)
        if not isinstance(shape, tuple) or len(shape) > 64 or not all(_is_int(s) and 0 <= s < 2**62 for s in shape):
            raise self._corrupt(f"{what} must be a tuple of at most 64 non-negative ints, got {_describe(shape)}")
        return shape

    def _plain_dtype(self, dt: Any, what: str, allow_object: bool = False, depth: int = 0) -> np.dtype:
        """``dt`` checked: a numpy dtype of a plain kind, structured ones with every field in the item."""
        if not isinstance(dt, np.dtype):
            raise self._corrupt(f"{what} must be a numpy dtype, got {_describe(dt)}")
        if depth > 8:
            raise self._unsafe(f"{what} nests structured dtypes more than 8 deep")
        if dt.kind == "O" and dt.fields is None and dt.subdtype is None:
            if not allow_object:
                raise self._unsafe(f"{what} is the object dtype, which is admitted only for whole arrays of strings")
            return dt
        if dt.kind not in _PLAIN_KINDS or dt.hasobject:
            raise self._unsafe(
                f"{what} {dt} is not a plain dtype (bool, integer, float, complex, bytes, str or structured of those)"
            )
        if dt.itemsize < 1:
            raise self._corrupt(f"{what} {dt} has item size 0")
        if dt.subdtype is not None:
            self._plain_dtype(dt.subdtype[0], f"the base of {what}", depth=depth + 1)
        for name, spec in (dt.fields or {}).items():
            sub, offset = spec[0], spec[1]
            self._plain_dtype(sub, f"field {name!r} of {what}", depth=depth + 1)
            if offset < 0 or offset + sub.itemsize > dt.itemsize:
                raise self._unsafe(f"field {name!r} of {what} lies outside its {dt.itemsize}-byte item")
        return dt

    def _new_dtype(self, args: tuple) -> np.dtype:
        """``numpy.dtype(spec, align, copy)``: a fresh plain dtype; its state (BUILD) is checked later."""
        if not 1 <= len(args) <= 3:
            raise self._corrupt(f"numpy.dtype takes 1 to 3 arguments, got {len(args)}")
        spec = args[0]
        if not isinstance(spec, str) or not _SPEC.fullmatch(spec):
            raise self._unsafe(
                f"numpy dtype {spec!r} is not admitted; only plain dtypes (kinds b i u f c S U V, and O for arrays "
                "of strings) are" if isinstance(spec, (str, bytes)) else f"numpy.dtype got {_describe(spec)}"
            )
        size = int(spec[1:])
        if spec[0] == "O" and size not in (4, 8):
            raise self._unsafe(f"numpy dtype {spec!r} is not admitted; the object dtype is O8 (or O4)")
        itemsize = size * (4 if spec[0] == "U" else 1)
        if itemsize > self._budget.limit.max_bytes:
            raise PickleTooLargeError(
                f"{self._source}{self._context()}: dtype {spec!r} declares items of {itemsize} bytes, more than the "
                f"size limit of {self._budget.limit.max_bytes} bytes ({self._budget.limit.basis})"
            )
        try:
            dt = np.dtype(spec, False, True)  # copy=True: a new descriptor, never numpy's shared one
        except (TypeError, ValueError) as e:
            raise self._corrupt(f"numpy does not know dtype {spec!r} ({e})") from None
        if dt.kind != spec[0] or dt.itemsize < 1:
            raise self._unsafe(f"numpy dtype {spec!r} is not a plain dtype of kind {spec[0]!r}")
        self._unbuilt_dtypes[id(dt)] = (dt, [])
        return dt

    def _dtype_from_state(self, inst: np.dtype, state: Any) -> np.dtype:
        """A fresh dtype built with numpy's constructor from the checked pickled state of ``inst``.

        State (numpy's layout): ``(version, byteorder, subarray, names, fields, itemsize, alignment,
        flags[, metadata])``; flags and alignment are recomputed by numpy, never taken from the file.
        """
        what = f"the state of dtype {inst.str!r}"
        if not isinstance(state, tuple) or len(state) not in (8, 9):
            raise self._corrupt(f"{what} must be a tuple of 8 or 9 items (numpy's layout), got {_describe(state)}")
        version, order, sub, names, fields, elsize, alignment, flags = state[:8]
        if version not in (3, 4) or not all(_is_int(x) for x in (version, elsize, alignment, flags)):
            raise self._corrupt(f"{what}: unsupported version {version!r} or non-int sizes")
        if len(state) == 9 and state[8] is not None and not isinstance(state[8], dict):
            raise self._unsafe(f"{what} carries metadata of {_describe(state[8])} (datetime dtypes are not admitted)")
        if order not in ("<", ">", "|", "="):
            raise self._corrupt(f"{what}: byte order must be one of < > | =, got {_describe(order)}")
        kind = inst.kind
        if kind != "V" and (sub is not None or names is not None or fields is not None):
            raise self._unsafe(f"{what} gives fields or a subarray to a non-structured dtype")
        try:
            if kind == "O":
                return np.dtype(object)
            if kind in "biufc":
                if elsize not in (-1, inst.itemsize):
                    raise self._unsafe(f"{what} changes the item size to {elsize}")
                if inst.itemsize > 1 and order == "|":
                    raise self._corrupt(f"{what}: a {inst.itemsize}-byte number needs a byte order")
                return inst.newbyteorder(order) if inst.itemsize > 1 else np.dtype(inst.str)
            if elsize != inst.itemsize:
                raise self._unsafe(f"{what} changes the item size from {inst.itemsize} to {elsize}")
            if kind == "S":
                return np.dtype(f"S{elsize}")
            if kind == "U":
                if elsize % 4 or order == "|":
                    raise self._corrupt(f"{what}: a str dtype needs 4 bytes per character and a byte order")
                return np.dtype(f"{order}U{elsize // 4}")
            return self._void_dtype(what, sub, names, fields, elsize)
        except (TypeError, ValueError) as e:
            raise self._corrupt(f"{what} does not describe a valid dtype ({e})") from None

    def _void_dtype(self, what: str, sub: Any, names: Any, fields: Any, elsize: int) -> np.dtype:
        if sub is not None:
            if names is not None or fields is not None or not isinstance(sub, tuple) or len(sub) != 2:
                raise self._corrupt(f"{what}: a subarray is (base dtype, shape) without fields")
            base = self._plain_dtype(sub[0], f"the base of {what}")
            shape = self._shape(sub[1], f"the subarray shape of {what}")
            if base.itemsize * math.prod(shape) != elsize:
                raise self._unsafe(f"{what}: subarray {shape} of {base} does not fill the {elsize}-byte item")
            return np.dtype((base, shape))
        if names is None and fields is None:
            return np.dtype(f"V{elsize}")
        if not isinstance(names, tuple) or not names or not all(isinstance(n, str) for n in names) \
                or len(set(names)) != len(names) or len(names) > 4096:
            raise self._corrupt(f"{what}: field names must be a non-empty tuple of distinct strings")
        if not isinstance(fields, dict) or set(fields) != set(names) or len(fields) != len(names):
            raise self._unsafe(
                f"{what}: the fields must be exactly the names {list(names)[:10]} (titles are not admitted)"
            )
        formats, offsets = [], []
        for n in names:
            spec = fields[n]
            if not isinstance(spec, tuple) or len(spec) != 2 or not _is_int(spec[1]):
                raise self._unsafe(f"{what}: field {n!r} must be (dtype, offset), got {_describe(spec)}")
            sub_dt = self._plain_dtype(spec[0], f"field {n!r} of {what}")  # refuses object fields
            if spec[1] < 0 or spec[1] + sub_dt.itemsize > elsize:
                raise self._unsafe(
                    f"{what}: field {n!r} ({sub_dt}, {sub_dt.itemsize} bytes at offset {spec[1]}) lies outside "
                    f"the {elsize}-byte item"
                )
            formats.append(sub_dt)
            offsets.append(spec[1])
        return np.dtype({"names": list(names), "formats": formats, "offsets": offsets, "itemsize": elsize})
