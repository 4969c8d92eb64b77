"""The layout every format shares: modality names and their order, split names, a split's keys."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..dataset import SPLITS
from .errors import DataFormatError

MODALITIES: tuple[str, ...] = ("text", "audio", "vision")
"""The standard modalities: the default, and the canonical order they come in."""
RESERVED_NAMES: tuple[str, ...] = ("labels", "mask", "index")
SPLIT_ALIASES = {"train": "train", "valid": "valid", "dev": "valid", "val": "valid", "test": "test"}


def _resolve_modalities(modalities: Sequence[str] | None) -> tuple[str, ...]:
    """The modalities to read, in bundle order: the standard ones asked for in the canonical order
    text, audio, vision, then the extra names in the order given. None → the standard three."""
    if modalities is None:
        return MODALITIES
    if isinstance(modalities, str):
        modalities = [modalities]
    mods = list(modalities)
    for m in mods:
        if not isinstance(m, str) or not m.isidentifier():
            raise ValueError(f"modality name {m!r} must be a Python identifier (a string such as 'pose')")
        if m in RESERVED_NAMES:
            raise ValueError(f"{m!r} is a reserved batch key and cannot name a modality")
    if not mods or len(set(mods)) != len(mods):
        raise ValueError(f"modalities must be a non-empty list without repeats, got {mods}")
    return tuple(m for m in MODALITIES if m in mods) + tuple(m for m in mods if m not in MODALITIES)


def _map_splits(keys: Sequence[Any], where: str) -> dict[str, Any]:
    """Canonical split name → the file's key; unknown, duplicate or missing splits are errors."""
    out: dict[str, Any] = {}
    for k in keys:
        canon = SPLIT_ALIASES.get(k) if isinstance(k, str) else None
        if canon is None:
            raise DataFormatError(
                f"{where}: unknown split {k!r}; expected 'train', 'valid' (or 'dev'/'val') and 'test'"
            )
        if canon in out:
            raise DataFormatError(f"{where}: splits {out[canon]!r} and {k!r} both mean '{canon}'")
        out[canon] = k
    missing = [s for s in SPLITS if s not in out]
    if missing:
        raise DataFormatError(f"{where}: missing split(s) {missing}; found {[str(k) for k in keys]}")
    return out


def _pick(d: Mapping[str, Any], mods: tuple[str, ...], label_key: str, where: str, split: str) -> dict[str, Any]:
    """``{modality: d[modality], "labels": d[label_key]}``; a missing key names the split and lists those present."""
    missing = [k for k in (*mods, label_key) if k not in d]
    if missing:
        raise DataFormatError(
            f"{where}: split '{split}' is missing key(s) {missing}; the keys present are {sorted(map(str, d))}"
        )
    return {**{m: d[m] for m in mods}, "labels": d[label_key]}

