"""The errors :func:`~promptkit.data.safe_pickle.safe_load` raises: all are :class:`pickle.UnpicklingError`."""

from __future__ import annotations

import pickle

from ..limits import DataSizeError


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle names a global (code) that is not on the allow-list, or builds an object in a way
    that could run code or crash the process (an unsafe dtype, raw bytes for an object array)."""


class CorruptPickleError(pickle.UnpicklingError):
    """The file is truncated, is not a pickle, or its content is inconsistent."""


class PickleTooLargeError(UnsafePickleError, DataSizeError):
    """The pickle declares more bytes than its size limit (see :mod:`promptkit.data.limits`)."""
