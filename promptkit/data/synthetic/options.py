"""The generator's arguments checked and resolved: modalities, views, split sizes, per-modality sizes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields

import numpy as np

from ..dataset import SPLITS
from .shapes import MODALITIES
from .views import EXTRA_VIEW, VIEWS, VIEWS_V2, ModalityView


def _resolve_modalities(modalities: Sequence[str] | None) -> tuple[str, ...]:
    """The requested modality names, checked: identifiers, no repeats, not a reserved batch key."""
    if modalities is None:
        return MODALITIES
    if isinstance(modalities, str):
        raise TypeError(f"modalities must be a list of names, got the string {modalities!r}")
    mods = tuple(modalities)
    if not mods:
        raise ValueError("modalities must name at least one modality")
    for m in mods:
        if not isinstance(m, str) or not m.isidentifier():
            raise ValueError(f"modality name {m!r} must be a Python identifier (a string such as 'pose')")
        if m in ("labels", "mask", "index"):
            raise ValueError(f"{m!r} is a reserved batch key and cannot name a modality")
    if len(set(mods)) != len(mods):
        raise ValueError(f"modalities must not repeat, got {list(mods)}")
    return mods


def _resolve_views(views, mods: tuple[str, ...], version: int) -> dict[str, ModalityView]:
    """Modality → its view: ``views`` where given, the default for extras; standard ones omitted."""
    given = dict(views or {})
    unknown = set(given) - set(mods)
    if unknown:
        raise KeyError(f"views names unknown modality {sorted(unknown)}; modalities: {list(mods)}")
    allowed = [f.name for f in fields(ModalityView)]
    out: dict[str, ModalityView] = {}
    for m in mods:
        v = given.get(m)
        if v is None:
            if m not in MODALITIES:
                out[m] = EXTRA_VIEW[version]
            continue
        if isinstance(v, Mapping):
            bad = set(v) - set(allowed)
            if bad:
                raise KeyError(f"views[{m!r}] has unknown field(s) {sorted(bad)}; fields: {allowed}")
            base = EXTRA_VIEW[version] if m not in MODALITIES else (VIEWS if version == 1 else VIEWS_V2)[m]
            v = ModalityView(**{**vars(base), **v})
        if not isinstance(v, ModalityView):
            raise TypeError(f"views[{m!r}] must be a ModalityView or a dict of its fields, got {type(v).__name__}")
        if isinstance(v.nuisance_rank, bool) or not isinstance(v.nuisance_rank, (int, np.integer)) or v.nuisance_rank < 1:
            raise ValueError(f"views[{m!r}].nuisance_rank must be a positive int, got {v.nuisance_rank!r}")
        for f in allowed:
            x = getattr(v, f)
            if f != "nuisance_rank" and (isinstance(x, bool) or not isinstance(x, (int, float)) or not np.isfinite(x)
                                         or (f in ("view_noise", "nuisance_scale", "step_noise") and x < 0)):
                raise ValueError(f"views[{m!r}].{f} must be a finite number (>= 0 for noise and scale), got {x!r}")
        out[m] = v
    return out


def _resolve_sizes(sizes, default: Mapping[str, int]) -> dict[str, int]:
    if sizes is None:
        return dict(default)
    if isinstance(sizes, Mapping):
        if set(sizes) != set(SPLITS):
            raise KeyError(f"sizes must name the splits {list(SPLITS)}, got {sorted(sizes)}")
        out = {s: sizes[s] for s in SPLITS}
    else:
        sizes = list(sizes)
        if len(sizes) != 3:
            raise ValueError(f"sizes must be (n_train, n_valid, n_test), got {sizes}")
        out = dict(zip(SPLITS, sizes))
    for s, n in out.items():
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"size of split {s!r} must be a positive int, got {n!r}")
    return {s: int(n) for s, n in out.items()}


def _resolve_per_modality(
    values, default: Mapping[str, int], what: str, mods: Sequence[str] = MODALITIES
) -> dict[str, int]:
    """The standard three modalities' sizes (defaults overridden by ``values``); checks every entry
    of ``values``, which may also name the extra modalities of ``mods`` (resolved by the caller)."""
    if values is None:
        return dict(default)
    unknown = set(values) - set(mods)
    if unknown:
        raise KeyError(f"{what} names unknown modality {sorted(unknown)}; modalities: {list(mods)}")
    out = {**default, **values}
    for m, v in out.items():
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{what}[{m!r}] must be a positive int, got {v!r}")
    return {m: int(out[m]) for m in MODALITIES}
