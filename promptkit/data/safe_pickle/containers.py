"""Checked plain containers: ``set``, ``frozenset``, ``complex``, ``bytes``, ``bytearray``, ``OrderedDict``
and ``_codecs.encode`` (how protocols < 3 pickle bytes), each called only with plain arguments."""

from __future__ import annotations

import collections
from typing import Any

from .context import _CheckContext, _describe

_LATIN1 = ("latin1", "latin-1", "latin_1", "iso8859-1", "iso-8859-1", "iso8859_1", "l1")


class _ContainerChecks(_CheckContext):
    """The handlers of the plain container constructors a pickle may call."""

    def _new_set(self, args: tuple, kind: type) -> Any:
        if len(args) > 1 or (args and not isinstance(args[0], (list, tuple, set, frozenset))):
            raise self._corrupt(f"{kind.__name__}() takes one list of items, got {[_describe(a) for a in args]}")
        return kind(*args)

    def _new_complex(self, args: Any) -> complex:
        if not isinstance(args, tuple) or len(args) > 2 or not all(isinstance(a, (int, float)) for a in args):
            raise self._corrupt(f"complex() takes up to two numbers, got {_describe(args)}")
        return complex(*args)

    def _new_bytes(self, args: tuple, kind: type) -> Any:
        if not args:
            return kind()
        if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
            return kind(args[0])
        if len(args) == 2 and isinstance(args[0], str) and isinstance(args[1], str) and args[1].lower() in _LATIN1:
            return kind(self._encode(args))
        raise self._unsafe(
            f"{kind.__name__}() is admitted for bytes or (str, 'latin-1') only, got {[_describe(a) for a in args]}"
        )

    def _new_ordered_dict(self, args: tuple) -> collections.OrderedDict:
        if len(args) > 1 or (args and not isinstance(args[0], (list, tuple, dict))):
            raise self._corrupt(f"OrderedDict() takes one list of pairs, got {[_describe(a) for a in args]}")
        return collections.OrderedDict(*args)

    def _encode(self, args: tuple) -> bytes:
        """``_codecs.encode(text, 'latin1')``: how protocols < 3 pickle bytes."""
        if not 1 <= len(args) <= 3 or not isinstance(args[0], str):
            raise self._unsafe(f"_codecs.encode is only admitted for a str, got {[_describe(a) for a in args]}")
        encoding = args[1] if len(args) > 1 else "utf-8"
        if not isinstance(encoding, str) or encoding.lower() not in _LATIN1:
            raise self._unsafe(
                f"_codecs.encode is only admitted with the latin-1 codec (how pickles store bytes), got encoding "
                f"{encoding!r}" if isinstance(encoding, str) else f"_codecs.encode got encoding {_describe(encoding)}"
            )
        if len(args) == 3 and args[2] != "strict":
            raise self._unsafe(f"_codecs.encode is only admitted with errors='strict', got {args[2]!r}")
        try:
            return args[0].encode("latin1")
        except UnicodeEncodeError:
            raise self._corrupt("_codecs.encode got text that is not latin-1 (not bytes pickled by Python)") from None
