"""MMIN-style h5 files: a group per split, a dataset per modality and the labels; needs ``h5py``.

Only what is stored in the file itself is read: external links, external raw storage and
virtual datasets are refused before anything is read from them, and each dataset's declared
size is charged to the size budget before it is read.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..dataset import DataBundle
from ..limits import (
    H5_EXPANSION,
    SizeBudget,
    declared_bytes,
    features_cost,
    labels_cost,
    size_limit,
)
from .bundle import _build
from .errors import DataFormatError
from .layout import MODALITIES, _map_splits, _resolve_modalities

_H5_MODALITY_ALIASES = {"L": "text", "A": "audio", "V": "vision"}
_H5_LABEL_NAMES = ("label", "labels")


def load_h5(
    path: str | os.PathLike, modalities: Sequence[str] | None = None, task: str | None = None,
    name: str | None = None, max_bytes: int | str | None = None,
) -> DataBundle:
    """Load an MMIN-style h5 file; the exact layout is in :mod:`promptkit.data.loaders`.

    Only the datasets that are read (the modalities asked for and the labels) are loaded, each
    after its declared size is checked against the limit.
    """
    try:
        import h5py
    except ImportError:
        raise ImportError("reading .h5 data needs h5py: pip install 'promptkit-msa[h5]'") from None
    path = Path(path)
    mods = _resolve_modalities(modalities)
    for m in mods:
        if m in _H5_LABEL_NAMES:
            raise ValueError(f"modality name {m!r} is the h5 label dataset, not a modality")
    where = str(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file {where!r} does not exist")
    budget = SizeBudget(size_limit(path.stat().st_size, H5_EXPANSION, max_bytes), where)
    raw: dict[str, dict[str, Any]] = {}
    keys: dict[str, dict[str, str]] = {}
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DataFormatError(f"{where}: not a readable HDF5 file ({e})") from e
    with f:
        groups = _map_splits(list(f.keys()), where)
        for split, key in groups.items():
            grp = _h5_member(f, f, key, where, f"split '{key}'", h5py)
            if not isinstance(grp, h5py.Group):
                raise DataFormatError(f"{where}: '{key}' must be a group of datasets (one per modality + 'label')")
            members: dict[str, str] = {}  # canonical name → the dataset's name in the file
            for member in grp:
                canon = "labels" if member in _H5_LABEL_NAMES else _H5_MODALITY_ALIASES.get(member, member)
                if canon in members:
                    raise DataFormatError(
                        f"{where}: split '{key}' holds '{canon}' twice ('{members[canon]}' and '{member}')"
                    )
                members[canon] = member
            if modalities is None:
                unknown = [m for c, m in members.items() if c not in MODALITIES and c != "labels"]
                if unknown:
                    raise DataFormatError(
                        f"{where}: split '{key}' has unknown dataset '{unknown[0]}'; expected modalities "
                        f"{list(MODALITIES)} (or L/A/V) and 'label'; to read it as a modality pass "
                        f"modalities=[..., {unknown[0]!r}]"
                    )
            missing = [c for c in (*mods, "labels") if c not in members]
            if missing:
                shown = ["label" if c == "labels" else c for c in missing]
                raise DataFormatError(
                    f"{where}: split '{key}' is missing dataset(s) {shown}; the datasets present are "
                    f"{sorted(grp.keys())}"
                )
            keys[split] = {c: members[c] for c in (*mods, "labels")}
            raw[split] = {c: _read_h5_dataset(f, grp, members[c], where, key, budget, h5py, labels=c == "labels")
                          for c in (*mods, "labels")}
        num_classes = _h5_int_attr(f, "num_classes", where)
    return _build(raw, where, "h5", mods, task, name, num_classes=num_classes, keys=keys)


def _h5_member(f: Any, parent: Any, name: str, where: str, at: str, h5py: Any, depth: int = 0) -> Any:
    """``parent[name]``, refusing any link that could lead out of the file before following it.

    A hard link is the object itself; a soft link is followed only through hard links (a path
    within the file); an external link (which opens another file) or a user-defined link is
    refused, naming ``at``.
    """
    try:
        info = parent.id.links.get_info(name.encode())
    except (KeyError, RuntimeError):  # h5py raises either for a missing name
        raise DataFormatError(f"{where}: {at}: {name!r} does not exist in {parent.name!r}") from None
    if info.type == h5py.h5l.TYPE_HARD:
        return parent[name]
    if info.type == h5py.h5l.TYPE_EXTERNAL:
        target_file, target = (v.decode(errors="replace") for v in parent.id.links.get_val(name.encode()))
        raise DataFormatError(
            f"{where}: {at} is an external link to {target!r} in file {target_file!r}; promptkit reads only what is "
            "stored in the data file itself, so copy that data into it"
        )
    if info.type != h5py.h5l.TYPE_SOFT:
        raise DataFormatError(
            f"{where}: {at} is a user-defined link (type {info.type}), which promptkit does not follow"
        )
    target = parent.id.links.get_val(name.encode()).decode(errors="replace")
    if depth >= 8:
        raise DataFormatError(f"{where}: {at}: soft links lead on more than 8 times (last to {target!r})")
    node = f if target.startswith("/") else parent
    for part in (p for p in target.split("/") if p and p != "."):
        if not isinstance(node, h5py.Group):
            raise DataFormatError(f"{where}: {at}: the soft link to {target!r} does not lead to an object")
        via = at if depth else f"{at} (a soft link to {target!r})"
        node = _h5_member(f, node, part, where, via, h5py, depth + 1)
    return node


def _read_h5_dataset(f: Any, grp: Any, member: str, where: str, split: str, budget: SizeBudget, h5py: Any,
                     labels: bool = False) -> np.ndarray:
    """One numeric dataset stored in the file itself, read after what loading it allocates is
    counted against ``budget``: the declared array plus its float32 copy and checks for features
    (:func:`~promptkit.data.limits.features_cost`), or the label checks (``labels``)."""
    at = f"split '{split}', dataset '{member}'"
    node = _h5_member(f, grp, member, where, at, h5py)
    if not isinstance(node, h5py.Dataset):
        raise DataFormatError(
            f"{where}: {at}: expected a dataset, found a group "
            "(per-utterance groups are not read; stack them into one (N, T, D) dataset)"
        )
    if node.shape is None:
        raise DataFormatError(f"{where}: {at}: the dataset is empty (null dataspace)")
    if node.dtype.kind not in "biuf":
        raise DataFormatError(f"{where}: {at}: expected a numeric dataset, got dtype {node.dtype}")
    if node.is_virtual:
        sources = sorted({vs.file_name for vs in node.virtual_sources()})
        raise DataFormatError(
            f"{where}: {at} is a virtual dataset (its data is mapped from {sources[:3]}); promptkit reads only data "
            "stored in the file itself, so store the data in the dataset"
        )
    external = node.external
    if external:
        raise DataFormatError(
            f"{where}: {at} keeps its data in external file(s) {[e[0] for e in external][:3]}; promptkit reads only "
            "data stored in the file itself, so store the data in the dataset"
        )
    what = f"{at} (shape {node.shape}, {node.dtype})"
    budget.charge(declared_bytes(node.shape, node.dtype.itemsize), what)
    numel = declared_bytes(node.shape, 1)
    if labels:
        budget.charge(labels_cost(numel), f"{what} as labels, with their checks,", verb="needs")
    else:
        copied = node.dtype != np.float32  # what h5py reads is writeable: float32 is used as read
        budget.charge(features_cost(numel, copied),
                      f"{what} as float32{' (a copy)' if copied else ''}, with its finite check,", verb="needs")
    try:
        return node[()]
    except (OSError, ValueError, TypeError) as e:
        raise DataFormatError(f"{where}: {at}: could not read the dataset ({e})") from e


def _h5_int_attr(f: Any, name: str, where: str) -> int | None:
    """The root attribute ``name`` as an int (None when absent); anything but one integer is an error."""
    if name not in f.attrs:
        return None
    at = f"{where}: root attribute '{name}'"
    try:
        aid = f.attrs.get_id(name)
        shape, dtype = aid.shape, aid.dtype
    except (OSError, TypeError, ValueError) as e:
        raise DataFormatError(f"{at}: expected an integer, the attribute could not be read ({e})") from e
    if dtype.kind not in "iu" or (shape is not None and int(np.prod(shape)) != 1):
        kind = "a string" if dtype.kind in "SUO" else f"dtype {dtype}"
        raise DataFormatError(f"{at}: expected an integer (a number of classes), got {kind} of shape {shape}")
    value = np.asarray(f.attrs[name]).reshape(-1)[0]
    return int(value)
