"""The splits' checked features and labels assembled into a :class:`~promptkit.data.DataBundle`.

Across splits: sample counts agree within a split, feature sizes and sequence lengths across
splits, one label kind; the class count (the model head's size) is checked against
:func:`~promptkit.data.limits.class_limit`.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..dataset import SPLITS, DataBundle, MSADataset
from ..limits import CLASSES_ENV_VAR, SizeBudget, class_limit
from ..tokens import TokenFormatError, check_tokens
from .checks import _check_features, _check_token_ids, _normalize_labels
from .errors import DataFormatError


def _build(raw: Mapping[str, Mapping[str, Any]], where: str, fmt: str, mods: tuple[str, ...], task: str | None,
           name: str | None, num_classes: int | None = None,
           keys: Mapping[str, Mapping[str, str]] | None = None, budget: SizeBudget | None = None,
           tokens: Mapping[str, int | None] | None = None) -> DataBundle:
    """Validate per-split features and labels and assemble the bundle.

    ``tokens``: modality → vocabulary size for the modalities read as token ids ``(N, 3, T)``
    (None: the largest id in the file + 1).

    ``keys[split][name]`` is the file's key for modality/``"labels"`` ``name`` (for messages;
    default: the name itself). ``budget``: the file's size budget, charged for stacking lists and
    for the float32/int64 copies before they are made; None where the reader has charged them
    already (h5 counts them from the declared dtype before reading).
    """
    if task not in (None, "regression", "classification"):
        raise ValueError(f"task must be 'regression', 'classification' or None, got {task!r}")
    tokens = dict(tokens or {})
    feats: dict[str, dict[str, np.ndarray]] = {}
    labels: dict[str, np.ndarray] = {}
    kinds = {}
    for split in SPLITS:
        entries = raw[split]
        key = dict((keys or {}).get(split, {}))
        key = {c: key.get(c, c) for c in (*mods, "labels")}
        feats[split] = {m: _check_token_ids(entries[m], where, split, key[m], budget) if m in tokens else
                        _check_features(entries[m], where, split, m, key[m], budget) for m in mods}
        labels[split], kinds[split] = _normalize_labels(entries["labels"], where, split, task, key["labels"], budget)
        counts = {key[m]: x.shape[0] for m, x in feats[split].items()} | {key["labels"]: labels[split].shape[0]}
        if len(set(counts.values())) != 1:
            raise DataFormatError(f"{where}: split '{split}' has mismatched sample counts {counts}{_odd_ones(counts)}")
        if labels[split].shape[0] == 0:
            raise DataFormatError(f"{where}: split '{split}' is empty (0 samples)")
    vocab = {m: _vocab(feats, m, v, where) for m, v in tokens.items()}
    for m in mods:
        for axis, what in ((2, "feature size"), (1, "sequence length")) if m not in tokens else ((2, "sequence length"),):
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
    splits = {s: MSADataset(feats[s], labels[s], modalities=mods, vocab_sizes=vocab) for s in SPLITS}
    return DataBundle(
        splits=splits,
        modalities=mods,
        feature_dims={m: vocab.get(m, int(feats["train"][m].shape[2])) for m in mods},
        seq_lens={m: int(feats["train"][m].shape[2 if m in vocab else 1]) for m in mods},
        task=out_task,
        out_dim=out_dim,
        description=f"{fmt} file {os.path.abspath(where)}",
        name=name or Path(where).stem,
        info={"format": fmt, "path": os.path.abspath(where), "label_kind": kind},
    )


def _vocab(feats: Mapping[str, Mapping[str, np.ndarray]], m: str, given: int | None, where: str) -> int:
    """The vocabulary size of token modality ``m``: ``given`` (every id must be below it), else the
    largest id in any split + 1; each split's rows checked (:func:`~promptkit.data.tokens.check_tokens`)."""
    largest = max(int(feats[s][m][:, 0].max(initial=0)) for s in SPLITS)
    size = largest + 1 if given is None else given
    for s in SPLITS:
        try:
            check_tokens(feats[s][m], max(size, 2), f"{where}: split '{s}', modality '{m}' (token ids)")
        except TokenFormatError as e:
            hint = "" if given is None else f" (vocab_size = {given})"
            raise DataFormatError(f"{e}{hint}") from None
    return max(size, 2)


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
