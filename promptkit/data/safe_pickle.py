"""Load data pickles without running code from them.

A pickle names functions ("globals") that the loader calls while reading it; a malicious file can
name ``os.system`` or ``builtins.eval``. :func:`safe_load` admits only what numpy arrays and plain
containers need: numpy's array/scalar/dtype reconstruction, ``numpy.ndarray``, ``numpy.dtype``
and a few builtins (``set``, ``frozenset``, ``complex``, ``bytearray``, ``OrderedDict``).
Anything else is refused with :class:`UnsafePickleError` before it is called.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
from typing import Any, BinaryIO, Callable

import numpy as np

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle names a global (code) that is not on the allow-list."""


class CorruptPickleError(pickle.UnpicklingError):
    """The file is truncated or is not a pickle."""


def _latin1_encode(text: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes, restricted to latin-1."""
    if not isinstance(text, str) or encoding.lower().replace("-", "") not in ("latin1", "iso88591"):
        raise UnsafePickleError(f"_codecs.encode is only admitted for str with latin-1, got encoding {encoding!r}")
    return text.encode("latin1", errors)


def _allowed() -> dict[tuple[str, str], Any]:
    table: dict[tuple[str, str], Any] = {}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[(mod, "_reconstruct")] = _multiarray._reconstruct
        table[(mod, "scalar")] = _multiarray.scalar
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        table[(mod, "_frombuffer")] = _numeric._frombuffer
    table[("numpy", "ndarray")] = np.ndarray
    table[("numpy", "dtype")] = np.dtype
    for mod in ("builtins", "__builtin__"):  # protocol < 3 writes Python 2's module name
        for name, obj in (("set", set), ("frozenset", frozenset), ("complex", complex), ("bytearray", bytearray)):
            table[(mod, name)] = obj
    table[("collections", "OrderedDict")] = collections.OrderedDict
    table[("_codecs", "encode")] = _latin1_encode
    return table


_ALLOWED = _allowed()


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, source: str, encoding: str) -> None:
        super().__init__(file, encoding=encoding)
        self._source = source

    def find_class(self, module: str, name: str) -> Callable:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refused to load {self._source}: the file tried to load code/global {module}.{name}, "
                "which is not a numpy array or a plain container; only load pickles you trust with "
                "pickle.load, or convert the file to .npz / .h5"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"refused to load {self._source}: it uses persistent ids ({pid!r})")


def safe_load(path_or_file: str | os.PathLike | BinaryIO, encoding: str = "latin1") -> Any:
    """Unpickle numpy arrays and plain containers only.

    Args:
        path_or_file: a path or a binary file object.
        encoding: how Python 2 ``str`` objects are decoded (``"latin1"`` reads Python 2 numpy pickles).

    Raises:
        UnsafePickleError: the pickle names any other global; nothing it names is called.
        CorruptPickleError: the file is truncated or not a pickle.
        FileNotFoundError: no such file.
    """
    if isinstance(path_or_file, (str, os.PathLike)):
        source = os.fspath(path_or_file)
        with open(source, "rb") as f:
            return _load(f, source, encoding)
    if not hasattr(path_or_file, "read"):
        raise TypeError(f"safe_load needs a path or a binary file object, got {type(path_or_file).__name__}")
    return _load(path_or_file, str(getattr(path_or_file, "name", "<stream>")), encoding)


def _load(f: BinaryIO, source: str, encoding: str) -> Any:
    try:
        return _RestrictedUnpickler(f, source, encoding).load()
    except UnsafePickleError:
        raise
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, IndexError, KeyError,
            AttributeError, UnicodeDecodeError, io.UnsupportedOperation) as e:
        raise CorruptPickleError(
            f"could not read {source}: the file is truncated or is not a pickle of numpy arrays "
            f"({type(e).__name__}: {e})"
        ) from e
