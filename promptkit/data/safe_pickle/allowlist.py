"""What a pickle may name: the globals numpy arrays and plain containers need, by (module, name).

Numpy 1.x and 2.x pickles name numpy's reconstruction functions under different modules, and
protocols < 3 write Python 2's ``__builtin__``; each spelling maps to the same object.
:data:`_GLOBAL_IDS` lets messages recognise an admitted global on the unpickler's stack.
"""

from __future__ import annotations

import _codecs
import collections
from typing import Any

import numpy as np

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]


def _allowed() -> dict[tuple[str, str], Any]:
    table: dict[tuple[str, str], Any] = {}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):  # numpy 1.x / 2.x pickles
        table[(mod, "_reconstruct")] = _multiarray._reconstruct
        table[(mod, "scalar")] = _multiarray.scalar
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        table[(mod, "_frombuffer")] = _numeric._frombuffer
    table[("numpy", "ndarray")] = np.ndarray
    table[("numpy", "dtype")] = np.dtype
    for mod in ("builtins", "__builtin__"):  # protocol < 3 writes Python 2's module name
        for obj in (set, frozenset, complex, bytes, bytearray):
            table[(mod, obj.__name__)] = obj
    table[("collections", "OrderedDict")] = collections.OrderedDict
    table[("_codecs", "encode")] = _codecs.encode
    return table


_ALLOWED = _allowed()
_GLOBAL_IDS = frozenset(id(obj) for obj in _ALLOWED.values())
