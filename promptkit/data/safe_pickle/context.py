"""What every check of the unpickler shares: where in the file it is, and how it refuses.

:class:`_CheckContext` is the base of the check mixins (:mod:`.dtypes`, :mod:`.arrays`,
:mod:`.containers`) and of the unpickler that combines them (:mod:`.unpickler`); it reads the
unpickler's ``stack``/``metastack`` (for the dict keys leading to an object) and the file's name
and size budget, which the unpickler sets.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..limits import SizeBudget
from .allowlist import _GLOBAL_IDS
from .errors import CorruptPickleError, UnsafePickleError


def _describe(obj: Any) -> str:
    """A short name for ``obj`` that never calls its ``repr`` (it may be huge)."""
    if isinstance(obj, type) or callable(obj):
        mod = getattr(obj, "__module__", None) or "?"
        return f"{mod}.{getattr(obj, '__qualname__', getattr(obj, '__name__', '?'))}"
    return f"a {type(obj).__name__}"


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


class _CheckContext:
    """Messages and size accounting for the checks: each error names the file and the keys on the way."""

    _source: str  # the file's name, for messages
    _budget: SizeBudget  # what the file's arrays are counted against

    def _context(self) -> str:
        """`` at 'train' > 'audio'``: the dict keys on the way to the object being built.

        A best guess from the unpickler's stack, for messages only: a key is pushed just before its
        value, so a str followed by a dict, a list, an array, a dtype or a global being called is
        taken as a key (in a ``SETITEMS`` batch, which starts with a key, only the last such pair is
        still being built).
        """
        frames = [*getattr(self, "metastack", [])[-32:], getattr(self, "stack", [])]
        keys: list[str] = []
        for frame in frames:
            found = [
                frame[i] for i in range(max(0, len(frame) - 2048), len(frame) - 1)
                if isinstance(frame[i], str) and (
                    isinstance(frame[i + 1], (dict, list, np.ndarray, np.dtype)) or id(frame[i + 1]) in _GLOBAL_IDS
                )
            ]
            if found and isinstance(frame[0], str):
                found = found[-1:]
            keys.extend(found)
        return " at " + " > ".join(repr(k[:60]) for k in keys[-8:]) if keys else ""

    def _unsafe(self, msg: str) -> UnsafePickleError:
        return UnsafePickleError(f"refused to load {self._source}{self._context()}: {msg}")

    def _corrupt(self, msg: str) -> CorruptPickleError:
        return CorruptPickleError(f"could not read {self._source}{self._context()}: {msg}")

    def _charge(self, nbytes: int, what: str) -> None:
        if not self._budget.fits(nbytes):
            self._budget.where = f"{self._source}{self._context()}"
        self._budget.charge(nbytes, what)
