"""``load_data``: the synthetic generator or a data file, its format given or detected."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..dataset import DataBundle
from .h5 import load_h5
from .pickles import _mmsa_from_obj, _mult_from_obj, _read_pickle

FORMATS = ("mult", "mmsa", "h5")
_FORMAT_ALIASES = {"mult": "mult", "mult_pickle": "mult", "mmsa": "mmsa", "mmsa_pickle": "mmsa",
                   "h5": "h5", "hdf5": "h5", "mmin": "h5"}
_H5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_FILE_OPTIONS = ("modalities", "task", "name", "max_bytes", "text", "vocab_size")


def load_data(source: str | os.PathLike, format: str | None = None, **kw: Any) -> DataBundle:
    """Load ``"synthetic"`` (keywords go to :func:`make_synthetic_mosi`) or a data file.

    Args:
        source: ``"synthetic"`` or a path to a MulT/MMSA pickle or an h5 file.
        format: ``"mult"``, ``"mmsa"`` or ``"h5"``; detected when None or ``"auto"`` (HDF5 signature or an
            ``.h5``/``.hdf5`` suffix → h5; a pickle with ``regression_labels`` → mmsa; else mult).
        **kw: ``modalities`` (see :mod:`promptkit.data.loaders` for extra names and the order), ``task``,
            ``name``, ``max_bytes`` (the size limit, see :mod:`promptkit.data.limits`) and, for MMSA
            pickles, ``text="tokens"`` with ``vocab_size`` (read ``text_bert`` token ids) for files;
            generator arguments for synthetic.
    """
    if isinstance(source, str) and source == "synthetic":
        if format not in (None, "auto"):
            raise ValueError(f"format={format!r} does not apply to the synthetic generator")
        from ..synthetic import make_synthetic_mosi

        return make_synthetic_mosi(**kw)
    path = Path(source)
    extra = set(kw) - set(_FILE_OPTIONS)
    if extra:
        raise TypeError(
            f"load_data({str(path)!r}): option(s) {sorted(extra)} apply only to source='synthetic'; "
            f"data files take {', '.join(_FILE_OPTIONS)}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"data file {str(path)!r} does not exist (or use source='synthetic')")
    fmt = _resolve_format(format) if format not in (None, "auto") else None
    text = {k: kw.pop(k) for k in ("text", "vocab_size") if k in kw}
    if fmt == "h5" or (fmt is None and _looks_like_h5(path)):
        _no_tokens(text, "h5", path)
        return load_h5(path, **kw)
    max_bytes = kw.pop("max_bytes", None)
    obj, budget = _read_pickle(path, max_bytes)
    if fmt is None:
        fmt = "mmsa" if _has_key_in_any_split(obj, "regression_labels") else "mult"
    if fmt == "mmsa":
        return _mmsa_from_obj(obj, path, budget, **kw, **text)
    _no_tokens(text, "mult", path)
    return _mult_from_obj(obj, path, budget, **kw)


def _no_tokens(text: Mapping[str, Any], fmt: str, path: Path) -> None:
    """Token-id text is read from MMSA pickles (``text_bert``) only."""
    if text.get("text", "features") != "features" or text.get("vocab_size") is not None:
        raise ValueError(f"load_data({str(path)!r}): text='tokens' reads MMSA's 'text_bert' token ids; "
                         f"a {fmt} file holds text features only")


def _resolve_format(fmt: str) -> str:
    if fmt not in _FORMAT_ALIASES:
        raise ValueError(f"unknown data format {fmt!r}; known formats: {list(FORMATS)}")
    return _FORMAT_ALIASES[fmt]


def _has_key_in_any_split(obj: Any, key: str) -> bool:
    return isinstance(obj, Mapping) and any(isinstance(v, Mapping) and key in v for v in obj.values())


def _looks_like_h5(path: Path) -> bool:
    if path.suffix.lower() in (".h5", ".hdf5"):
        return True
    with open(path, "rb") as f:
        return f.read(len(_H5_SIGNATURE)) == _H5_SIGNATURE
