"""The entry points: open the file, learn its size, run the checked unpickler under a size budget."""

from __future__ import annotations

import io
import os
from typing import Any, BinaryIO

from ..limits import PICKLE_EXPANSION, SizeBudget, size_limit
from .errors import CorruptPickleError, PickleTooLargeError, UnsafePickleError
from .reader import _BoundedReader
from .unpickler import _RestrictedUnpickler


def safe_load(path_or_file: str | os.PathLike | BinaryIO, encoding: str = "latin1",
              max_bytes: int | str | None = None) -> Any:
    """Unpickle numpy arrays and plain containers only (see the module docstring for what is checked).

    Args:
        path_or_file: a path or a binary file object.
        encoding: how Python 2 ``str`` objects are decoded (``"latin1"`` reads Python 2 numpy pickles).
        max_bytes: the most bytes the file's arrays may declare (an int or e.g. ``"80G"``); default
            :func:`~promptkit.data.limits.size_limit` of the file's size.

    Raises:
        UnsafePickleError: the pickle names any other global or builds an unsafe object; nothing
            unsafe is called or built.
        PickleTooLargeError: the arrays declare more than ``max_bytes`` (also a ``DataSizeError``).
        CorruptPickleError: the file is truncated, not a pickle or inconsistent.
        FileNotFoundError: no such file.
    """
    return load_counted(path_or_file, encoding, max_bytes)[0]


def load_counted(path_or_file: str | os.PathLike | BinaryIO, encoding: str = "latin1",
                 max_bytes: int | str | None = None) -> tuple[Any, SizeBudget]:
    """:func:`safe_load`, also returning the :class:`~promptkit.data.limits.SizeBudget` the file's
    arrays were counted against, so that whoever turns the result into arrays (stacking nested
    lists, converting dtypes) goes on counting against the same limit: the data loaders do."""
    if isinstance(path_or_file, (str, os.PathLike)):
        source = os.fspath(path_or_file)
        with open(source, "rb") as f:
            return _load(f, os.fstat(f.fileno()).st_size, source, encoding, max_bytes)
    if not hasattr(path_or_file, "read"):
        raise TypeError(f"safe_load needs a path or a binary file object, got {type(path_or_file).__name__}")
    f = path_or_file
    source = str(getattr(f, "name", "<stream>"))
    try:
        start = f.tell()
        size = f.seek(0, io.SEEK_END) - start
        f.seek(start)
    except (AttributeError, OSError, ValueError):  # not seekable: read it all to learn its size
        f = io.BytesIO(f.read())
        size = len(f.getbuffer())
    return _load(f, size, source, encoding, max_bytes)


def _load(f: BinaryIO, size: int, source: str, encoding: str,
          max_bytes: int | str | None) -> tuple[Any, SizeBudget]:
    limit = size_limit(size, PICKLE_EXPANSION, max_bytes)
    budget = SizeBudget(limit, source, error=PickleTooLargeError)
    reader = _BoundedReader(f, size, source)
    try:
        obj = _RestrictedUnpickler(reader, source, encoding, budget).load()
        budget.where = source  # messages of later charges name the file, not the last key seen
        return obj, budget
    except (UnsafePickleError, CorruptPickleError):
        raise
    except Exception as e:  # whatever else a malformed stream trips over: one error type, naming the file
        detail = str(e)
        detail = detail if len(detail) <= 300 else detail[:300] + " ..."
        raise CorruptPickleError(
            f"could not read {source}: the file is truncated or is not a pickle of numpy arrays "
            f"({type(e).__name__}: {detail})"
        ) from e
