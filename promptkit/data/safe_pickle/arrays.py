"""Checked numpy arrays and scalars: their state (shape, dtype, order, data) before numpy sees it.

Numeric data must be exactly ``prod(shape) * itemsize`` bytes and is counted against the size
budget; an object array must come as a list of plain ``str``/``bytes``/numbers, never as raw
bytes; str (``U``) data must hold valid code points.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .allowlist import _multiarray, _numeric
from .context import _describe, _is_int
from .dtypes import _DtypeChecks

_MAX_CODE_POINT = 0x10FFFF
_PLAIN_ELEMENTS = (str, bytes, int, float, complex, np.number, np.bool_)
"""What an object array may hold (``np.str_``/``np.bytes_`` are ``str``/``bytes``)."""


class _ArrayChecks(_DtypeChecks):
    """The handlers of numpy's ``_reconstruct`` (with the array's ``BUILD``), ``_frombuffer`` and ``scalar``."""

    _unbuilt_arrays: dict[int, np.ndarray]  # made by _reconstruct, awaiting their one BUILD (set by the unpickler)

    def _check_code_points(self, raw: bytes, dt: np.dtype, what: str) -> None:
        if dt.kind == "U" and raw:
            points = np.frombuffer(raw, dtype=dt.byteorder.replace("|", "=") + "u4")
            if int(points.max()) > _MAX_CODE_POINT:
                raise self._corrupt(f"{what} holds a str character beyond U+10FFFF")

    def _data_bytes(self, raw: Any, what: str) -> bytes:
        if isinstance(raw, bytes):
            return raw
        if isinstance(raw, bytearray):
            return bytes(raw)
        if isinstance(raw, str):  # Python 2 pickles: 8-bit strings decoded as latin-1
            try:
                return raw.encode("latin1")
            except UnicodeEncodeError:
                raise self._corrupt(f"{what}: text data is not latin-1 (not a Python 2 byte string)") from None
        raise self._corrupt(f"{what} must be bytes, got {_describe(raw)}")

    def _reconstruct(self, args: tuple) -> np.ndarray:
        """``_reconstruct(numpy.ndarray, shape, b'b')``: an empty array awaiting its state."""
        if len(args) != 3 or args[0] is not np.ndarray:
            raise self._unsafe(
                f"_reconstruct may only create a plain numpy.ndarray, got {_describe(args[0] if args else None)}"
            )
        shape = self._shape(args[1], "the shape given to _reconstruct")
        typecode = args[2]
        if typecode in (b"b", "b"):
            typecode = np.dtype("b")
        typecode = self._plain_dtype(typecode, "the dtype given to _reconstruct")
        self._charge(math.prod(shape) * typecode.itemsize, f"an array of shape {shape} and dtype {typecode}")
        arr = _multiarray._reconstruct(np.ndarray, shape, typecode)
        self._unbuilt_arrays[id(arr)] = arr
        return arr

    def _set_array_state(self, arr: np.ndarray, state: Any) -> None:
        """Check ``(version, shape, dtype, is_fortran, data)`` and only then hand it to numpy."""
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise self._corrupt(
                f"an array's state must be (version, shape, dtype, is_fortran, data), got {_describe(state)}"
            )
        if len(state) == 5 and not _is_int(state[0]):
            raise self._corrupt(f"an array's state version must be an int, got {_describe(state[0])}")
        shape, dt, fortran, raw = state[-4:]
        shape = self._shape(shape, "an array's shape")
        dt = self._plain_dtype(dt, "an array's dtype", allow_object=True)
        if dt.subdtype is not None:
            raise self._unsafe(f"an array's dtype {dt} is a subarray dtype (numpy never pickles one)")
        if not isinstance(fortran, (bool, int)) or fortran not in (0, 1):
            raise self._corrupt(f"an array's is_fortran must be a bool, got {_describe(fortran)}")
        n = math.prod(shape)
        what = f"an array of shape {shape} and dtype {dt}"
        if dt.kind == "O":
            if not isinstance(raw, list):
                raise self._unsafe(
                    f"{what} comes as {_describe(raw)}; an object array must come as a list of its elements "
                    "(raw bytes would be read as pointers)"
                )
            if len(raw) != n:
                raise self._corrupt(f"{what} declares {n} element(s) but holds {len(raw)}")
            self._charge(n * dt.itemsize, what)
            for i, v in enumerate(raw):
                if not isinstance(v, _PLAIN_ELEMENTS):
                    raise self._unsafe(
                        f"element {i} of {what} is {_describe(v)}; object arrays may hold only str, bytes and numbers"
                    )
            arr.__setstate__((1, shape, np.dtype(object), bool(fortran), raw))  # numpy stores each element
            return
        data = self._data_bytes(raw, f"the data of {what}")
        if len(data) != n * dt.itemsize:
            raise self._corrupt(f"{what} needs {n * dt.itemsize} bytes of data, the file holds {len(data)}")
        self._charge(len(data), what)
        self._check_code_points(data, dt, f"the data of {what}")
        arr.__setstate__((1, shape, dt, bool(fortran), data))

    def _frombuffer(self, args: tuple) -> np.ndarray:
        """``_frombuffer(data, dtype, shape, order)``: protocol 5's way to pickle a contiguous array."""
        if len(args) != 4:
            raise self._corrupt(f"_frombuffer takes (buffer, dtype, shape, order), got {len(args)} argument(s)")
        buf, dt, shape, order = args
        if not isinstance(buf, (bytes, bytearray)):
            raise self._corrupt(f"_frombuffer needs bytes, got {_describe(buf)}")
        dt = self._plain_dtype(dt, "the dtype given to _frombuffer")
        if dt.subdtype is not None:
            raise self._unsafe(f"the dtype given to _frombuffer {dt} is a subarray dtype")
        shape = self._shape(shape, "the shape given to _frombuffer")
        if order not in ("C", "F"):
            raise self._corrupt(f"_frombuffer's order must be 'C' or 'F', got {_describe(order)}")
        what = f"an array of shape {shape} and dtype {dt}"
        if len(buf) != math.prod(shape) * dt.itemsize:
            need = math.prod(shape) * dt.itemsize
            raise self._corrupt(f"{what} needs {need} bytes of data, the file holds {len(buf)}")
        self._charge(len(buf), what)
        self._check_code_points(bytes(buf) if dt.kind == "U" else b"", dt, f"the data of {what}")
        if not buf:
            return np.empty(shape, dtype=dt, order=order)
        return _numeric._frombuffer(buf, dt, shape, order)

    def _scalar(self, args: tuple) -> Any:
        """``scalar(dtype, data)``: a numpy scalar such as ``np.float32(1.5)``."""
        if len(args) != 2:
            raise self._corrupt(f"numpy's scalar takes (dtype, data), got {len(args)} argument(s)")
        dt = self._plain_dtype(args[0], "a numpy scalar's dtype")
        if dt.subdtype is not None:
            raise self._unsafe(f"a numpy scalar's dtype {dt} is a subarray dtype")
        data = self._data_bytes(args[1], f"the data of a {dt} scalar")
        if len(data) != dt.itemsize:
            raise self._corrupt(f"a {dt} scalar needs {dt.itemsize} bytes of data, got {len(data)}")
        self._check_code_points(data, dt, f"a {dt} scalar")
        return _multiarray.scalar(dt, data)
