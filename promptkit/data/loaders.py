"""Read users' data files into a :class:`DataBundle`, checking them on the way in.

Formats (``format=`` in :func:`load_data`, else detected):

- ``"mult"``: MulT pickles (CMU-MOSI/MOSEI/IEMOCAP ``*_data.pkl``):
  ``{split: {"text": (N, T, D), "audio": ..., "vision": ..., "labels": ..., "id": optional}}``.
  Labels ``(N, 1, 1)`` → regression; IEMOCAP's ``(N, 4, 2)`` one-hot → four binary tasks,
  long ``(N, 4)`` (the index of the hot entry), ``out_dim = 8``.
- ``"mmsa"``: MMSA pickles (CH-SIMS, MOSI/MOSEI by the MMSA toolkit): per split ``"text"``
  ``(N, T, 768)``, ``"audio"``, ``"vision"``, ``"regression_labels"`` ``(N,)`` (or
  ``"classification_labels"`` with ``task="classification"``); other keys (``raw_text``, ``id``,
  ...) are ignored, except that ``"<modality>_lengths"`` (``audio_lengths``, ``vision_lengths``,
  ``pose_lengths``, ...), when present for a modality that is read, must hold one length per
  sample of that modality. ``"text_bert"`` token ids are not features and are refused.
- ``"h5"`` (needs ``h5py``), an MMIN-style layout::

      /train/text    (N, T_t, D_t) float     (MMIN's name "L" is accepted too)
      /train/audio   (N, T_a, D_a) float     ("A")
      /train/vision  (N, T_v, D_v) float     ("V")
      /train/label   (N,) int class ids (IEMOCAP 4-class), or (N,) float for regression,
                     or (N, 4, 2) / (N, 4) for four binary tasks   ("labels" accepted too)
      /valid/...     ("dev" or "val" accepted)
      /test/...
      root attribute "num_classes" (optional, an integer; default: largest class id + 1)

  The file is read only for itself: a dataset keeping its data in external files (external raw
  storage), a virtual dataset (mapped from other files) and an external link (to an object in
  another file, also one reached through a soft link) are refused, naming the split and dataset,
  before anything is read from them. Soft links within the file are followed.

**Modalities.** ``modalities=`` picks the modalities to read; the default is the standard three,
``("text", "audio", "vision")``. Any Python-identifier name may be given (not ``labels``, ``mask``
or ``index``, the batch keys): an extra name such as ``"pose"`` is read from the key of that name
in every split, in all three formats (``(N, T, D)`` like the others). The bundle's modality order
(the batch/mask order) is the standard modalities that were asked for, in the canonical order
text, audio, vision, then the extra ones in the order given: ``["pose", "vision", "text"]`` gives
``("text", "vision", "pose")``. A requested key that a split lacks is an error naming the file, the
split and the key and listing the keys present. With the default modalities, a MulT pickle or an
h5 split holding any other key is an error (it names the key; pass ``modalities=`` to read it,
or to read a subset); with ``modalities`` given, keys not asked for are not read.

Split names ``train``/``valid``/``test``; ``dev`` and ``val`` mean ``valid``. In audio, ``-inf``
(a known quirk of the MulT CMU-MOSI/MOSEI files) becomes 0 with a warning that counts them; any
other NaN/inf, in any modality, is an error naming split, modality and sample indices. A modality
with no features (``D = 0``) or no time steps (``T = 0``) is an error.

**Sizes.** What loading allocates is counted against a size limit before it is allocated (see
:mod:`promptkit.data.limits`; ``max_bytes=`` overrides it): each array as declared, a nested list
at the size it stacks to (a list referenced many times counted each time), and the float32/int64
copies the loaders make (an int8 dataset counts 6 bytes an element, not 1). A file that needs more
is refused with a :class:`~promptkit.data.limits.DataSizeError` naming the array and the size.

**Classes.** A classification file's class count (largest class id + 1, the h5 ``num_classes``
attribute, or two outputs per binary task) sizes the model head, so it may be at most
``max(10000, the number of samples)`` (:func:`~promptkit.data.limits.class_limit`;
``$PROMPTKIT_MAX_CLASSES`` replaces it): more is a :class:`DataFormatError` naming the file, the
key and the value.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .dataset import SPLITS, DataBundle, MSADataset
from .limits import (
    CLASSES_ENV_VAR,
    H5_EXPANSION,
    SizeBudget,
    class_limit,
    declared_bytes,
    features_cost,
    labels_cost,
    size_limit,
)
from .safe_pickle import load_counted

MODALITIES: tuple[str, ...] = ("text", "audio", "vision")
"""The standard modalities: the default, and the canonical order they come in."""
RESERVED_NAMES: tuple[str, ...] = ("labels", "mask", "index")
SPLIT_ALIASES = {"train": "train", "valid": "valid", "dev": "valid", "val": "valid", "test": "test"}
FORMATS = ("mult", "mmsa", "h5")
_FORMAT_ALIASES = {"mult": "mult", "mult_pickle": "mult", "mmsa": "mmsa", "mmsa_pickle": "mmsa",
                   "h5": "h5", "hdf5": "h5", "mmin": "h5"}
_H5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_H5_MODALITY_ALIASES = {"L": "text", "A": "audio", "V": "vision"}
_H5_LABEL_NAMES = ("label", "labels")
_FILE_OPTIONS = ("modalities", "task", "name", "max_bytes")
_CLASS_ID_CEILING = 2**53
"""Class ids from here up do not survive float64 or int64 unchanged; the class limit refuses far fewer."""
_MAX_NDIM = 64
"""numpy's most dimensions: a deeper nested list cannot be stacked."""
_SCALAR_DTYPES = {bool: np.dtype(bool), int: np.dtype(np.int64), float: np.dtype(np.float64),
                  complex: np.dtype(np.complex128)}
_SCALAR_TYPES = frozenset(_SCALAR_DTYPES)


class DataFormatError(ValueError):
    """A data file does not have the layout or content its format needs."""


class AudioInfWarning(UserWarning):
    """``-inf`` audio values were replaced by 0 (the MulT audio quirk)."""


# --- public entry points ----------------------------------------------------------------------
def load_data(source: str | os.PathLike, format: str | None = None, **kw: Any) -> DataBundle:
    """Load ``"synthetic"`` (keywords go to :func:`make_synthetic_mosi`) or a data file.

    Args:
        source: ``"synthetic"`` or a path to a MulT/MMSA pickle or an h5 file.
        format: ``"mult"``, ``"mmsa"`` or ``"h5"``; detected when None or ``"auto"`` (HDF5 signature or an
            ``.h5``/``.hdf5`` suffix → h5; a pickle with ``regression_labels`` → mmsa; else mult).
        **kw: ``modalities`` (see the module docstring for extra names and the order), ``task``,
            ``name`` and ``max_bytes`` (the size limit, see :mod:`promptkit.data.limits`) for files;
            generator arguments for synthetic.
    """
    if isinstance(source, str) and source == "synthetic":
        if format not in (None, "auto"):
            raise ValueError(f"format={format!r} does not apply to the synthetic generator")
        from .synthetic import make_synthetic_mosi

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
    if fmt == "h5" or (fmt is None and _looks_like_h5(path)):
        return load_h5(path, **kw)
    max_bytes = kw.pop("max_bytes", None)
    obj, budget = _read_pickle(path, max_bytes)
    if fmt is None:
        fmt = "mmsa" if _has_key_in_any_split(obj, "regression_labels") else "mult"
    if fmt == "mmsa":
        return _mmsa_from_obj(obj, path, budget, **kw)
    return _mult_from_obj(obj, path, budget, **kw)


def load_mult_pickle(
    path: str | os.PathLike, modalities: Sequence[str] | None = None, task: str | None = None,
    name: str | None = None, max_bytes: int | str | None = None,
) -> DataBundle:
    """Load a MulT pickle; see the module docstring for the layout."""
    path = Path(path)
    obj, budget = _read_pickle(path, max_bytes)
    return _mult_from_obj(obj, path, budget, modalities=modalities, task=task, name=name)


def load_mmsa_pickle(
    path: str | os.PathLike, modalities: Sequence[str] | None = None, task: str = "regression",
    name: str | None = None, max_bytes: int | str | None = None,
) -> DataBundle:
    """Load an MMSA pickle (regression labels by default); see the module docstring."""
    path = Path(path)
    obj, budget = _read_pickle(path, max_bytes)
    return _mmsa_from_obj(obj, path, budget, modalities=modalities, task=task, name=name)


def load_h5(
    path: str | os.PathLike, modalities: Sequence[str] | None = None, task: str | None = None,
    name: str | None = None, max_bytes: int | str | None = None,
) -> DataBundle:
    """Load an MMIN-style h5 file; the exact layout is in the module docstring.

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
            for member in grp.keys():
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


# --- format-specific parsing ------------------------------------------------------------------
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
                   task: str | None = "regression", name: str | None = None) -> DataBundle:
    where = str(path)
    mods = _resolve_modalities(modalities)
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
        if "text" in mods and "text" not in d and "text_bert" in d:
            raise DataFormatError(
                f"{where}: split '{key}' has only 'text_bert' (token ids, (N, 3, T)), not text features "
                "'text' (N, T, 768); promptkit reads extracted features, so export the MMSA file with "
                "BERT features or pass modalities without 'text'"
            )
        entries = _pick(d, mods, label_key, where, key)
        for m in mods:
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
        keys[split] = {**{m: m for m in mods}, "labels": label_key}
    return _build(raw, where, "mmsa", mods, task, name, keys=keys, budget=budget)


# --- shared checks ----------------------------------------------------------------------------
def _build(raw: Mapping[str, Mapping[str, Any]], where: str, fmt: str, mods: tuple[str, ...], task: str | None,
           name: str | None, num_classes: int | None = None,
           keys: Mapping[str, Mapping[str, str]] | None = None, budget: SizeBudget | None = None) -> DataBundle:
    """Validate per-split features and labels and assemble the bundle.

    ``keys[split][name]`` is the file's key for modality/``"labels"`` ``name`` (for messages;
    default: the name itself). ``budget``: the file's size budget, charged for stacking lists and
    for the float32/int64 copies before they are made; None where the reader has charged them
    already (h5 counts them from the declared dtype before reading).
    """
    if task not in (None, "regression", "classification"):
        raise ValueError(f"task must be 'regression', 'classification' or None, got {task!r}")
    feats: dict[str, dict[str, np.ndarray]] = {}
    labels: dict[str, np.ndarray] = {}
    kinds = {}
    for split in SPLITS:
        entries = raw[split]
        key = dict((keys or {}).get(split, {}))
        key = {c: key.get(c, c) for c in (*mods, "labels")}
        feats[split] = {m: _check_features(entries[m], where, split, m, key[m], budget) for m in mods}
        labels[split], kinds[split] = _normalize_labels(entries["labels"], where, split, task, key["labels"], budget)
        counts = {key[m]: x.shape[0] for m, x in feats[split].items()} | {key["labels"]: labels[split].shape[0]}
        if len(set(counts.values())) != 1:
            raise DataFormatError(f"{where}: split '{split}' has mismatched sample counts {counts}{_odd_ones(counts)}")
        if labels[split].shape[0] == 0:
            raise DataFormatError(f"{where}: split '{split}' is empty (0 samples)")
    for m in mods:
        for axis, what in ((2, "feature size"), (1, "sequence length")):
            sizes = {s: feats[s][m].shape[axis] for s in SPLITS}
            if len(set(sizes.values())) != 1:
                raise DataFormatError(f"{where}: modality '{m}' has a different {what} per split: {sizes}")
    if len(set(kinds.values())) != 1:
        raise DataFormatError(f"{where}: the splits' labels are of different kinds: {kinds}")
    kind = kinds["train"]
    n_samples = sum(len(labels[s]) for s in SPLITS)
    if kind == "regression":
        out_task, out_dim = "regression", 1
    elif kind == "classes":
        out_task = "classification"
        top = max(SPLITS, key=lambda s: int(labels[s].max()))
        largest = int(labels[top].max())
        label_key = dict((keys or {}).get(top, {})).get("labels", "labels")
        if num_classes is None:
            _check_class_count(largest + 1, n_samples, where,
                               f"split '{top}', key '{label_key}': class id {largest}", f"{largest + 1} classes")
        else:
            _check_class_count(num_classes, n_samples, where, f"root attribute 'num_classes' = {num_classes}",
                               f"{num_classes} classes")
        out_dim = largest + 1 if num_classes is None else num_classes
        if largest >= out_dim:
            raise DataFormatError(f"{where}: class id {largest} does not fit num_classes={out_dim}")
        if out_dim < 2:
            raise DataFormatError(f"{where}: classification labels need at least 2 classes, found {out_dim}")
    else:  # binary tasks (N, K)
        out_task, out_dim = "classification", 2 * labels["train"].shape[1]
        label_key = dict((keys or {}).get("train", {})).get("labels", "labels")
        _check_class_count(out_dim, n_samples, where,
                           f"split 'train', key '{label_key}' of shape {labels['train'].shape}: "
                           f"{labels['train'].shape[1]} binary tasks", f"{out_dim} outputs (2 per task)")
    splits = {s: MSADataset(feats[s], labels[s], modalities=mods) for s in SPLITS}
    return DataBundle(
        splits=splits,
        modalities=mods,
        feature_dims={m: int(feats["train"][m].shape[2]) for m in mods},
        seq_lens={m: int(feats["train"][m].shape[1]) for m in mods},
        task=out_task,
        out_dim=out_dim,
        description=f"{fmt} file {os.path.abspath(where)}",
        name=name or Path(where).stem,
        info={"format": fmt, "path": os.path.abspath(where), "label_kind": kind},
    )


def _check_class_count(count: int, n_samples: int, where: str, what: str, head: str) -> None:
    """Refuse a class count (the model head's size) beyond :func:`~promptkit.data.limits.class_limit`.

    ``what`` names the key and value that set it, ``head`` what the head would be ("1001 classes").
    """
    limit = class_limit(n_samples)
    if count > limit.max_classes:
        raise DataFormatError(
            f"{where}: {what} would give the model head {head}, more than the {limit.max_classes} plausible for this "
            f"file ({limit.basis}); class ids run from 0 to the number of classes - 1 (if the file is genuine, set "
            f"${CLASSES_ENV_VAR})"
        )


def _odd_ones(counts: Mapping[str, int]) -> str:
    """``": 'labels' (5) disagree(s) with the 6 samples of the others"`` when most keys agree."""
    (major, votes), *_ = Counter(counts.values()).most_common()
    if votes * 2 <= len(counts):
        return ""
    odd = {k: n for k, n in counts.items() if n != major}
    return f": {', '.join(f'{k!r} ({n})' for k, n in odd.items())} disagree(s) with the {major} samples of the others"


def _as_array(x: Any, where: str, loc: str, expected: str, budget: SizeBudget | None = None) -> np.ndarray:
    """``np.asarray(x)``, with a ragged nested list (or anything numpy cannot stack) an error at
    ``where: loc``; what stacking allocates is charged to ``budget`` first (see :func:`_stacked_size`)."""
    if isinstance(x, np.ndarray):
        return x
    at = f"{where}: {loc}"
    if budget is not None:
        numel, itemsize, dtype, shape = _stacked_size(x, at)
        budget.charge(
            numel * itemsize,
            f"{loc} (a nested {type(x).__name__} stacking to shape {shape} of {dtype}, each repeated reference "
            "counted)" if isinstance(x, (list, tuple)) else f"{loc} (a {type(x).__name__} made an array of {dtype})",
            verb="needs",
        )
    try:
        return np.asarray(x)
    except (ValueError, TypeError) as e:
        ragged = isinstance(x, (list, tuple)) and "inhomogeneous" in str(e)
        what = ("a ragged nested list (its rows differ in length)" if ragged
                else f"a {type(x).__name__} numpy cannot stack")
        raise DataFormatError(f"{at}: expected {expected}, got {what} ({' '.join(str(e).split())[:200]})") from None


def _stacked_size(x: Any, at: str) -> tuple[int, int, np.dtype, tuple[int, ...]]:
    """``(elements, itemsize, dtype, shape)`` of what ``np.asarray(x)`` would allocate, found without
    allocating.

    Elements are counted one by one, a list or array referenced many times once per reference
    (``[row] * 10**6`` stacks a million copies of ``row``), so that a pickle whose memo shares one
    list between many places is counted at the size stacking gives it. The dtype is numpy's
    promotion of the leaves' dtypes and ``itemsize`` at least its item size (an upper bound: Python
    scalars count 8 bytes, numbers among strings 128); ``shape`` follows the first element at each
    level (for messages). Each distinct list is walked once, so the walk takes time in proportion
    to the file's size, not to what it stacks to.

    Raises:
        DataFormatError: a list that contains itself, or nesting deeper than numpy's 64 dimensions.
    """
    sizes: dict[int, int] = {}  # id(list) -> elements it stacks to
    open_lists: set[int] = set()
    dtypes: set[np.dtype] = set()
    widest = {str: 0, bytes: 0}

    def leaf(v: Any) -> int:
        if isinstance(v, np.ndarray):
            dtypes.add(v.dtype)
            return v.size
        if isinstance(v, np.generic):  # numpy scalars, np.str_ and np.bytes_ included
            dtypes.add(v.dtype)
            return 1
        if type(v) in _SCALAR_DTYPES:
            dtypes.add(_SCALAR_DTYPES[type(v)])
            return 1
        if isinstance(v, (str, bytes)):
            kind = str if isinstance(v, str) else bytes
            widest[kind] = max(widest[kind], len(v))
            return 1
        if isinstance(v, bytearray):  # numpy reads its buffer: one uint8 per byte
            dtypes.add(np.dtype(np.uint8))
            return len(v)
        dtypes.add(np.dtype(object))
        return 1

    def walk(v: Any, depth: int) -> int:
        if not isinstance(v, (list, tuple)):
            return leaf(v)
        key = id(v)
        if key in sizes:
            return sizes[key]
        if key in open_lists:
            raise DataFormatError(f"{at}: expected an array, got a {type(v).__name__} that contains itself")
        if depth >= _MAX_NDIM:
            raise DataFormatError(f"{at}: expected an array, got lists nested more than {_MAX_NDIM} deep")
        types = set(map(type, v))
        if types <= _SCALAR_TYPES:  # the common innermost level: no call per element
            dtypes.update(_SCALAR_DTYPES[t] for t in types)
            n = len(v)
        else:
            open_lists.add(key)
            n = sum(walk(item, depth + 1) for item in v)
            open_lists.discard(key)
        sizes[key] = n
        return n

    numel = walk(x, 0)
    mixed_text = any(widest.values()) and bool(dtypes)
    for kind, code in ((str, "U"), (bytes, "S")):
        if widest[kind]:
            dtypes.add(np.dtype(f"{code}{widest[kind]}"))
    try:
        dtype = np.result_type(*dtypes) if dtypes else np.dtype(np.float64)
    except TypeError:  # numpy would make an object array
        dtype = np.dtype(object)
    itemsize = max([dtype.itemsize, *(d.itemsize for d in dtypes)])
    if mixed_text:  # numbers among strings become 32-character strings
        itemsize = max(itemsize, 128)
    shape: list[int] = []
    v = x
    while isinstance(v, (list, tuple)) and len(shape) < _MAX_NDIM:
        shape.append(len(v))
        if not v:
            break
        v = v[0]
    if isinstance(v, np.ndarray):
        shape.extend(v.shape)
    return numel, itemsize, dtype, tuple(shape)


def _check_features(x: Any, where: str, split: str, modality: str, key: str | None = None,
                    budget: SizeBudget | None = None) -> np.ndarray:
    """Features as float32 ``(N, T, D)``; audio ``-inf`` → 0 with a warning, other non-finite → error.

    ``budget`` (when given) is charged for the float32 copy and the finite check's mask first."""
    key = key or modality
    loc = f"split '{split}', key '{key}'" + (f" ({modality})" if key != modality else "")
    at = f"{where}: {loc}"
    arr = _as_array(x, where, loc, "a numeric array (N, T, D)", budget)
    if arr.dtype.kind not in "fiub":
        raise DataFormatError(f"{at}: expected a numeric array (N, T, D), got dtype {arr.dtype}")
    if arr.ndim != 3:
        raise DataFormatError(f"{at}: expected an array of rank 3 (N, T, D), got shape {arr.shape}")
    if arr.shape[0] and arr.shape[2] == 0:
        raise DataFormatError(
            f"{at}: modality '{modality}' has feature size D = 0 (shape {arr.shape}); a modality needs at least one "
            "feature, so leave it out with modalities=[...]"
        )
    if arr.shape[0] and arr.shape[1] == 0:
        raise DataFormatError(
            f"{at}: modality '{modality}' has sequence length T = 0 (shape {arr.shape}); a modality needs at least "
            "one time step, so leave it out with modalities=[...]"
        )
    copy = arr.dtype != np.float32 or not arr.flags.writeable
    if budget is not None:
        budget.charge(features_cost(arr.size, copy),
                      f"{loc} (shape {arr.shape}, {arr.dtype}) as float32{' (a copy)' if copy else ''}, with its "
                      "finite check,", verb="needs")
    arr = np.array(arr, dtype=np.float32, copy=copy)
    if modality == "audio":
        neg_inf = np.isneginf(arr)
        count = int(neg_inf.sum())
        if count:
            arr[neg_inf] = 0.0
            warnings.warn(
                f"{where}: split '{split}': replaced {count} -inf audio value(s) with 0 "
                "(a known quirk of the MulT CMU-MOSI/MOSEI audio features)",
                AudioInfWarning,
                stacklevel=2,
            )
    finite = np.isfinite(arr).all(axis=(1, 2))
    if not finite.all():
        bad = np.flatnonzero(~finite)
        n_vals = int((~np.isfinite(arr)).sum())
        raise DataFormatError(
            f"{where}: split '{split}', modality '{modality}' has {n_vals} NaN/inf value(s) in sample index(es) "
            f"{bad[:10].tolist()}{' ...' if len(bad) > 10 else ''}; clean the file (only -inf in audio is "
            "replaced automatically)"
        )
    return arr


def _normalize_labels(y: Any, where: str, split: str, task: str | None, key: str = "labels",
                      budget: SizeBudget | None = None) -> tuple[np.ndarray, str]:
    """Labels → (array, kind): float ``(N,)`` "regression", long ``(N,)`` "classes" or long ``(N, K)`` "binary".

    ``budget`` (when given) is charged for the copies and checks first."""
    loc = f"split '{split}', key '{key}'"
    at = f"{where}: {loc}"
    arr = _as_array(y, where, loc, "labels (N,), (N, 1, 1) or (N, K, 2)", budget)
    if arr.dtype.kind not in "fiub":
        raise DataFormatError(f"{at}: expected numeric labels, got dtype {arr.dtype}")
    if budget is not None:
        budget.charge(labels_cost(arr.size), f"{loc} (shape {arr.shape}, {arr.dtype}) as labels, with their checks,",
                      verb="needs")
    if arr.dtype.kind == "b":
        arr = arr.astype(np.int64)
    if arr.ndim == 0:
        raise DataFormatError(f"{at}: expected an array (N,), (N, 1, 1) or (N, K, 2), got a scalar")
    if not np.isfinite(arr).all():
        bad = np.flatnonzero(~np.isfinite(arr.reshape(len(arr), -1)).all(axis=1))
        raise DataFormatError(f"{at}: NaN/inf label(s) in sample index(es) {bad[:10].tolist()}")
    if arr.ndim > 1 and all(s == 1 for s in arr.shape[1:]):
        arr = arr.reshape(len(arr))
    if arr.ndim == 3 and arr.shape[2] == 2:  # one-hot per binary task: IEMOCAP (N, 4, 2)
        if task == "regression":
            raise DataFormatError(f"{at}: one-hot labels {arr.shape} cannot be used for regression")
        bad = np.flatnonzero(~(np.isin(arr, (0, 1)).all(axis=(1, 2)) & (arr.sum(axis=2) == 1).all(axis=1)))
        if len(bad):
            raise DataFormatError(
                f"{at}: expected one-hot pairs along the last axis of {arr.shape}, sample index(es) "
                f"{bad[:10].tolist()} are not one-hot (first: {arr[bad[0]].tolist()})"
            )
        return arr.argmax(axis=2).astype(np.int64), "binary"
    if arr.ndim == 2:  # (N, K) 0/1 per binary task
        if task == "regression" or not np.isin(arr, (0, 1)).all():
            raise DataFormatError(
                f"{at}: labels of shape {arr.shape} must be 0/1 per binary task for classification; "
                "regression labels are (N,) or (N, 1, 1)"
            )
        return arr.astype(np.int64), "binary"
    if arr.ndim != 1:
        raise DataFormatError(f"{at}: expected shape (N,), (N, 1, 1), (N, K) or (N, K, 2), got {arr.shape}")
    classify = task == "classification" or (task is None and arr.dtype.kind in "iub")
    if not classify:
        return arr.astype(np.float32), "regression"
    if not (np.equal(np.round(arr), arr).all() and (arr >= 0).all()):
        bad = np.flatnonzero(~((np.round(arr) == arr) & (arr >= 0)))
        raise DataFormatError(
            f"{at}: class labels must be non-negative integers, sample index(es) {bad[:10].tolist()} "
            f"are not (first: {arr[bad[0]]})"
        )
    if arr.size and arr.max() >= _CLASS_ID_CEILING:  # int64 would wrap it; no head has this many classes
        i = int(np.argmax(arr))
        raise DataFormatError(
            f"{at}: class id {arr[i]} (sample index {i}) is not a plausible class id: class ids run from 0 to the "
            "number of classes - 1"
        )
    return arr.astype(np.int64), "classes"


def _pick(d: Mapping[str, Any], mods: tuple[str, ...], label_key: str, where: str, split: str) -> dict[str, Any]:
    """``{modality: d[modality], "labels": d[label_key]}``; a missing key names the split and lists those present."""
    missing = [k for k in (*mods, label_key) if k not in d]
    if missing:
        raise DataFormatError(
            f"{where}: split '{split}' is missing key(s) {missing}; the keys present are {sorted(map(str, d))}"
        )
    return {**{m: d[m] for m in mods}, "labels": d[label_key]}


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


def _resolve_format(fmt: str) -> str:
    if fmt not in _FORMAT_ALIASES:
        raise ValueError(f"unknown data format {fmt!r}; known formats: {list(FORMATS)}")
    return _FORMAT_ALIASES[fmt]


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


def _has_key_in_any_split(obj: Any, key: str) -> bool:
    return isinstance(obj, Mapping) and any(isinstance(v, Mapping) and key in v for v in obj.values())


def _looks_like_h5(path: Path) -> bool:
    if path.suffix.lower() in (".h5", ".hdf5"):
        return True
    with open(path, "rb") as f:
        return f.read(len(_H5_SIGNATURE)) == _H5_SIGNATURE
