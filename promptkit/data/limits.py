"""How many bytes a data file may make the loaders allocate, checked before anything is allocated.

A file declares the shape of every array it holds, and a tiny file can declare a huge one: a
130-byte pickle can ask numpy for a 40 GiB array, and a 10 KB h5 file can hold a 40 GiB dataset
that was never written (HDF5 then returns its fill value). The loaders therefore add up the
declared sizes (``prod(shape) * itemsize``) and refuse a file once one array, or all of them
together, would go over its limit:

    limit = min(CEILING, max(FLOOR, expansion * file size))

with ``expansion`` :data:`PICKLE_EXPANSION` for pickles (they hold their array data, so only
object arrays can grow) and :data:`H5_EXPANSION` for h5 files (which may be compressed). A limit
given as ``max_bytes=`` (to :func:`~promptkit.data.load_data`, the loaders and
:func:`~promptkit.data.safe_load`) or in the environment variable ``PROMPTKIT_MAX_DATA_BYTES``
(bytes, or a number with a K/M/G/T suffix, powers of 1024) replaces the derived one.

**What is counted** is what loading allocates, not only what the file stores, each before it is
allocated:

- each array as the file declares it (its shape times its item size; for a compressed h5
  dataset the shape counts, never the stored bytes);
- a nested list (or tuple) in a pickle at the size ``np.asarray`` stacks it to, element by
  element: a list referenced many times (the pickle memo lets a 10 KB file refer to one row a
  million times) is counted every time it is referenced, as stacking copies it each time;
- what the loaders make of each array (:func:`features_cost`, :func:`labels_cost`): features
  become float32 (4 bytes an element, a copy unless they are float32 and writeable already) and
  get a 1-byte mask for the finite check; labels become int64 or float32 with temporaries for
  their checks (:data:`LABEL_WORK_ITEMSIZE` bytes an element). An int8 dataset thus counts 6
  bytes an element, not 1.

**Classes.** A classification label sizes the model's output head, so its class count is checked
too (:func:`class_limit`): at most ``max(MAX_CLASSES, number of samples)`` classes (a data set
may well have more classes than 10,000 when it has at least one sample per class), or the number
in the environment variable ``PROMPTKIT_MAX_CLASSES``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40
FLOOR = 256 * MiB
"""Any file may declare this much: small enough to allocate harmlessly."""
CEILING = 64 * GiB
"""No file may declare more unless the limit is raised explicitly."""
PICKLE_EXPANSION = 8
"""Pickles hold their array data; 8x the file size leaves room for object arrays."""
H5_EXPANSION = 1000
"""h5 datasets may be compressed (zero-padded features compress very well)."""
ENV_VAR = "PROMPTKIT_MAX_DATA_BYTES"
FEATURE_ITEMSIZE = 4
"""Features are held as float32."""
MASK_ITEMSIZE = 1
"""The boolean mask of the finite check, one byte an element."""
LABEL_WORK_ITEMSIZE = 16
"""Labels: the int64/float32 result plus one 8-byte temporary an element for their checks."""
MAX_CLASSES = 10_000
"""The most classes a file's labels may give the model head, unless it has more samples."""
CLASSES_ENV_VAR = "PROMPTKIT_MAX_CLASSES"

_UNITS = {"": 1, "B": 1, "K": KiB, "KB": KiB, "KIB": KiB, "M": MiB, "MB": MiB, "MIB": MiB,
          "G": GiB, "GB": GiB, "GIB": GiB, "T": TiB, "TB": TiB, "TIB": TiB}


class DataSizeError(ValueError):
    """A data file declares more bytes than its size limit allows."""


@dataclass(frozen=True)
class SizeLimit:
    """The most bytes one file may declare, and how that number was set (for error messages)."""

    max_bytes: int
    basis: str


def parse_bytes(value: int | str, what: str) -> int:
    """``value`` (an int, or a string such as ``"80G"``, ``"512 MiB"``, ``"1000000"``) as bytes.

    Raises:
        ValueError: not a non-negative size; ``what`` names where the value came from.
    """
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number of bytes, got {value!r}")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", value)
        if not m or m.group(2).upper() not in _UNITS:
            raise ValueError(f"{what} must be a number of bytes such as 1000000, 512M or 80G, got {value!r}")
        n = int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    else:
        raise ValueError(f"{what} must be a number of bytes (int or str), got {type(value).__name__}")
    if n < 0:
        raise ValueError(f"{what} must not be negative, got {value!r}")
    return n


def size_limit(file_size: int, expansion: int, max_bytes: int | str | None = None) -> SizeLimit:
    """The limit for a file of ``file_size`` bytes: ``max_bytes``, else ``$PROMPTKIT_MAX_DATA_BYTES``,
    else ``min(CEILING, max(FLOOR, expansion * file_size))``."""
    if max_bytes is not None:
        return SizeLimit(parse_bytes(max_bytes, "max_bytes"), "set by max_bytes")
    env = os.environ.get(ENV_VAR)
    if env:
        return SizeLimit(parse_bytes(env, f"${ENV_VAR}"), f"set by ${ENV_VAR}")
    derived = min(CEILING, max(FLOOR, expansion * int(file_size)))
    return SizeLimit(
        derived,
        f"the default for a {format_bytes(file_size)} file: {expansion}x its size, at least "
        f"{format_bytes(FLOOR)}, at most {format_bytes(CEILING)}",
    )


@dataclass(frozen=True)
class ClassLimit:
    """The most classes a file's labels may give the model head, and how that number was set."""

    max_classes: int
    basis: str


def class_limit(n_samples: int) -> ClassLimit:
    """The most classes labels over ``n_samples`` samples may declare: ``$PROMPTKIT_MAX_CLASSES``,
    else ``max(MAX_CLASSES, n_samples)``.

    Raises:
        ValueError: ``$PROMPTKIT_MAX_CLASSES`` is not a whole number.
    """
    env = os.environ.get(CLASSES_ENV_VAR)
    if env:
        value = env.strip()
        if not value.isdigit():
            raise ValueError(f"${CLASSES_ENV_VAR} must be a whole number of classes, got {env!r}")
        return ClassLimit(int(value), f"set by ${CLASSES_ENV_VAR}")
    n_samples = int(n_samples)
    if n_samples > MAX_CLASSES:
        return ClassLimit(n_samples, f"one class per sample of its {n_samples} samples")
    return ClassLimit(MAX_CLASSES, f"the default for {n_samples} samples: max({MAX_CLASSES}, the number of samples)")


def features_cost(numel: int, copied: bool) -> int:
    """Bytes the loaders allocate for a feature array of ``numel`` elements on top of the array as
    stored: its float32 copy when one is made (``copied``) and the finite check's mask."""
    return int(numel) * ((FEATURE_ITEMSIZE if copied else 0) + MASK_ITEMSIZE)


def labels_cost(numel: int) -> int:
    """Bytes the loaders allocate for a label array of ``numel`` elements on top of it as stored."""
    return int(numel) * LABEL_WORK_ITEMSIZE


def declared_bytes(shape: Iterable[int], itemsize: int) -> int:
    """``prod(shape) * itemsize`` in Python ints (no overflow, whatever the file declares)."""
    return math.prod(int(s) for s in shape) * int(itemsize)


def format_bytes(n: int) -> str:
    """``1536`` → ``"1.5 KiB"``; exact bytes below 1 KiB."""
    n = int(n)
    if n < KiB:
        return f"{n} B"
    for unit, size in (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


class SizeBudget:
    """Adds up the bytes one file declares and refuses it when they pass the limit.

    Args:
        limit: the file's :class:`SizeLimit`.
        where: the file, for messages.
        error: the exception class raised (a :class:`DataSizeError` subclass).
    """

    def __init__(self, limit: SizeLimit, where: str, error: type[DataSizeError] = DataSizeError) -> None:
        self.limit = limit
        self.where = where
        self.error = error
        self.total = 0

    def fits(self, nbytes: int) -> bool:
        """Whether ``nbytes`` more stay within the limit (what :meth:`charge` checks)."""
        return self.total + int(nbytes) <= self.limit.max_bytes

    def charge(self, nbytes: int, what: str, verb: str = "declares") -> None:
        """Count ``nbytes`` for ``what`` (e.g. "split 'train', dataset 'audio' (N, T, D) float32");
        ``verb`` says how ``what`` comes to them in a refusal ("declares", "needs")."""
        nbytes = int(nbytes)
        cap = self.limit.max_bytes
        if nbytes > cap:
            raise self.error(
                f"{self.where}: {what} {verb} {format_bytes(nbytes)} ({nbytes} bytes), more than the size limit "
                f"of {format_bytes(cap)} ({self.limit.basis}); if the file is genuine, pass max_bytes= or set "
                f"${ENV_VAR}"
            )
        if self.total + nbytes > cap:
            raise self.error(
                f"{self.where}: {what} {verb} {format_bytes(nbytes)} ({nbytes} bytes), which brings the file's "
                f"arrays to {format_bytes(self.total + nbytes)}, more than the size limit of {format_bytes(cap)} "
                f"({self.limit.basis}); if the file is genuine, pass max_bytes= or set ${ENV_VAR}"
            )
        self.total += nbytes
