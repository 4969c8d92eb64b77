"""MulT and MMSA pickles: a dict of splits, each a dict of arrays; read with :func:`~promptkit.data.safe_load`.

The two formats differ in their keys (MulT ``labels``; MMSA ``regression_labels`` or
``classification_labels``, ``<modality>_lengths`` and keys that are ignored), not in how they
are read: both go on counting against the size budget the pickle's arrays were counted against.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..dataset import DataBundle
from ..limits import SizeBudget
from ..safe_pickle import load_counted
from .arrays import _as_array
from .bundle import _build
from .errors import DataFormatError
from .layout import MODALITIES, _map_splits, _pick, _resolve_modalities


def load_mult_pickle(
    path: str | os.PathLike, modalities: Sequence[str] | None = None, task: str | None = None,
    name: str | None = None, max_bytes: int | str | None = None,
) -> DataBundle:
    """Load a MulT pickle; see :mod:`promptkit.data.loaders` for the layout."""
    path = Path(path)
    obj, budget = _read_pickle(path, max_bytes)
    return _mult_from_obj(obj, path, budget, modalities=modalities, task=task, name=name)


def load_mmsa_pickle(
    path: str | os.PathLike, modalities: Sequence[str] | None = None, task: str = "regression",
    name: str | None = None, max_bytes: int | str | None = None, text: str = "features",
    vocab_size: int | None = None,
) -> DataBundle:
    """Load an MMSA pickle (regression labels by default); see :mod:`promptkit.data.loaders`.

    ``text="tokens"`` reads the text as ``text_bert`` token ids ``(N, 3, T)`` instead of the
    ``text`` features; ``vocab_size`` is then its vocabulary size (the tokenizer's, e.g. 30522
    for ``bert-base-uncased``; default the largest id in the file + 1)."""
    path = Path(path)
    obj, budget = _read_pickle(path, max_bytes)
    return _mmsa_from_obj(obj, path, budget, modalities=modalities, task=task, name=name, text=text,
                          vocab_size=vocab_size)


def _mult_from_obj(obj: Any, path: Path, budget: SizeBudget, modalities: Sequence[str] | None = None,
                   task: str | None = None, name: str | None = None) -> DataBundle:
    where = str(path)
    mods = _resolve_modalities(modalities)
    splits = _map_splits(_top_keys(obj, where), where)
    raw = {}
    for split, key in splits.items():
        d = _split_dict(obj[key], where, key)
        unknown = set(d) - set(MODALITIES) - {"labels", "id"}
        if modalities is None and unknown:
            raise DataFormatError(
                f"{where}: split '{key}' has unknown key(s) {sorted(map(str, unknown))}; a MulT pickle holds "
                f"modalities {list(MODALITIES)}, 'labels' and optionally 'id'; to read an extra key as a modality "
                "pass modalities=[..., 'name']"
            )
        raw[split] = _pick(d, mods, "labels", where, key)
    return _build(raw, where, "mult", mods, task, name, budget=budget)


def _mmsa_from_obj(obj: Any, path: Path, budget: SizeBudget, modalities: Sequence[str] | None = None,
                   task: str | None = "regression", name: str | None = None, text: str = "features",
                   vocab_size: int | None = None) -> DataBundle:
    where = str(path)
    mods = _resolve_modalities(modalities)
    tokens = _token_option(text, vocab_size, mods)
    task = task or "regression"
    if task not in ("regression", "classification"):
        raise ValueError(f"task must be 'regression' or 'classification', got {task!r}")
    label_key = f"{task}_labels"
    for m in mods:
        if m in ("regression_labels", "classification_labels"):
            raise ValueError(f"modality name {m!r} is an MMSA label key, not a modality")
    splits = _map_splits(_top_keys(obj, where), where)
    raw = {}
    keys = {}
    for split, key in splits.items():
        d = _split_dict(obj[key], where, key)
        if "text" in mods and not tokens and "text" not in d and "text_bert" in d:
            raise DataFormatError(
                f"{where}: split '{key}' has only 'text_bert' (token ids, (N, 3, T)), not text features "
                "'text' (N, T, 768); read the ids with text='tokens' ([data] text = \"tokens\" in a recipe) for a "
                "backbone with a text encoder, or pass modalities without 'text'"
            )
        if tokens:
            d = {**d, "text": _require(d, "text_bert", where, key)}
        entries = _pick(d, mods, label_key, where, key)
        for m in mods:
            if m in tokens:
                continue
            entries[m] = _as_array(entries[m], where, f"split '{key}', key '{m}'", "an array (N, T, D)", budget)
            lk = f"{m}_lengths"
            if lk in d:
                n = entries[m].shape[:1]
                got = _as_array(d[lk], where, f"split '{key}', key '{lk}'", f"one length per sample {n}",
                                budget).shape
                if got != n:
                    raise DataFormatError(
                        f"{where}: split '{key}', key '{lk}': expected shape {n} (one length per sample of "
                        f"'{m}', which has {n[0] if n else 0}), got {got}"
                    )
        raw[split] = entries
        keys[split] = {**{m: "text_bert" if m in tokens else m for m in mods}, "labels": label_key}
    return _build(raw, where, "mmsa", mods, task, name, keys=keys, budget=budget, tokens=tokens)


def _token_option(text: str, vocab_size: int | None, mods: tuple[str, ...]) -> dict[str, int | None]:
    """``{"text": vocab_size}`` when the text is read as token ids, else ``{}``."""
    if text not in ("features", "tokens"):
        raise ValueError(f"text must be 'features' or 'tokens', got {text!r}")
    if text == "features":
        if vocab_size is not None:
            raise ValueError("vocab_size applies to text='tokens' only")
        return {}
    if "text" not in mods:
        raise ValueError(f"text='tokens' reads the 'text' modality, but modalities are {list(mods)}")
    if vocab_size is not None and (isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 2):
        raise ValueError(f"vocab_size must be an int >= 2, got {vocab_size!r}")
    return {"text": vocab_size}


def _require(d: Mapping[str, Any], k: str, where: str, split: str) -> Any:
    if k not in d:
        raise DataFormatError(
            f"{where}: split '{split}' has no key '{k}' (token ids, (N, 3, T)) for text='tokens'; the keys present "
            f"are {sorted(map(str, d))}"
        )
    return d[k]


def _read_pickle(path: Path, max_bytes: int | str | None = None) -> tuple[Any, SizeBudget]:
    """The pickle's content and the size budget its arrays were counted against (to go on counting)."""
    if not path.is_file():
        raise FileNotFoundError(f"data file {str(path)!r} does not exist")
    return load_counted(path, max_bytes=max_bytes)


def _top_keys(obj: Any, where: str) -> list[Any]:
    if not isinstance(obj, Mapping):
        raise DataFormatError(f"{where}: expected a dict of splits at the top level, got {type(obj).__name__}")
    return list(obj.keys())


def _split_dict(d: Any, where: str, split: str) -> Mapping[str, Any]:
    if not isinstance(d, Mapping):
        raise DataFormatError(f"{where}: split '{split}' must be a dict of arrays, got {type(d).__name__}")
    return d
