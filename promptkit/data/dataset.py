"""Dataset, collate function and the :class:`DataBundle` every loader returns.

A sample is a dict: one float32 tensor ``(T_m, D_m)`` per modality (or, for a token modality,
int64 ``(3, T_m)``: ids, attention mask, segment ids; see :mod:`promptkit.data.tokens`),
``"labels"`` (a float scalar for regression, a long scalar or ``(4,)`` for classification) and
``"index"`` (an int). :func:`collate_msa` stacks samples into the batch contract of
``docs/architecture.md``: each modality ``(B, T_m, D_m)`` float32 (a token modality ``(B, 3, T_m)``
int64), ``"labels"`` ``(B,)`` or ``(B, 4)``, ``"mask"`` bool ``(B, M)`` (all True: loaders produce
complete data) and ``"index"`` long ``(B,)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .tokens import check_tokens, is_token_tensor

Task = Literal["regression", "classification"]
SPLITS: tuple[str, ...] = ("train", "valid", "test")
_RESERVED = ("labels", "mask", "index")


class MSADataset(Dataset):
    """Per-modality feature arrays plus labels, indexed by sample.

    Args:
        features: modality → array ``(N, T_m, D_m)`` with ``T_m, D_m >= 1`` (numpy or torch; stored as
            float32 tensors, without a copy when already float32 numpy). Any names but the batch
            keys ``labels``, ``mask`` and ``index``.
        labels: regression ``(N,)`` float, classification ``(N,)`` or ``(N, K)`` integer.
        modalities: the modality order (default: the order of ``features``).
        vocab_sizes: token modality → its vocabulary size V; such a modality's array is int
            ``(N, 3, T)`` (ids in ``[0, V)``, a 0/1 attention mask, 0/1 segment ids), kept int64,
            and its ``feature_dims`` entry is V.
    """

    def __init__(
        self,
        features: Mapping[str, np.ndarray | torch.Tensor],
        labels: np.ndarray | torch.Tensor,
        modalities: Sequence[str] | None = None,
        vocab_sizes: Mapping[str, int] | None = None,
    ) -> None:
        if not features:
            raise ValueError("MSADataset needs at least one modality")
        self.modalities: tuple[str, ...] = tuple(modalities) if modalities is not None else tuple(features)
        unknown = set(features) - set(self.modalities)
        missing = set(self.modalities) - set(features)
        if unknown or missing:
            raise KeyError(
                f"features have modalities {sorted(features)} but modalities={list(self.modalities)} "
                f"(unknown: {sorted(unknown)}, missing: {sorted(missing)})"
            )
        for name in self.modalities:
            if name in _RESERVED:
                raise ValueError(f"{name!r} is a reserved batch key and cannot name a modality")
        self.vocab_sizes = {str(m): int(v) for m, v in (vocab_sizes or {}).items()}
        stray = set(self.vocab_sizes) - set(self.modalities)
        if stray:
            raise KeyError(f"vocab_sizes names {sorted(stray)}, not among the modalities {list(self.modalities)}")
        self.features: dict[str, torch.Tensor] = {}
        for name in self.modalities:
            if name in self.vocab_sizes:
                self.features[name] = check_tokens(features[name], self.vocab_sizes[name], f"modality {name!r}")
                continue
            x = torch.as_tensor(features[name])
            if x.dim() != 3:
                raise ValueError(f"{name} features must have shape (N, T, D), got {tuple(x.shape)}")
            if x.shape[2] == 0 or x.shape[1] == 0:
                what = "feature size D" if x.shape[2] == 0 else "sequence length T"
                raise ValueError(
                    f"modality {name!r} has {what} = 0 (features of shape {tuple(x.shape)}); a modality needs at "
                    "least one feature and one time step, so leave it out instead"
                )
            self.features[name] = x.float()
        y = torch.as_tensor(labels)
        if y.is_complex():
            raise TypeError(f"labels must be real numbers, got dtype {y.dtype}")
        y = y.float() if y.is_floating_point() else y.long()
        if y.dim() not in (1, 2):
            raise ValueError(f"labels must have shape (N,) or (N, K), got {tuple(y.shape)}")
        self.labels = y
        n = {name: x.shape[0] for name, x in self.features.items()}
        n["labels"] = y.shape[0]
        if len(set(n.values())) != 1:
            raise ValueError(f"sample counts differ between modalities and labels: {n}")
        self._n = y.shape[0]

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> dict[str, Any]:
        i = int(i)
        if not -self._n <= i < self._n:
            raise IndexError(f"sample index {i} out of range for a dataset of {self._n} samples")
        i %= self._n
        sample: dict[str, Any] = {name: self.features[name][i] for name in self.modalities}
        sample["labels"] = self.labels[i]
        sample["index"] = i
        return sample

    @property
    def feature_dims(self) -> dict[str, int]:
        """D_m per modality; a token modality's vocabulary size V."""
        return {name: self.vocab_sizes.get(name, int(x.shape[2])) for name, x in self.features.items()}

    @property
    def seq_lens(self) -> dict[str, int]:
        return {name: int(x.shape[2] if name in self.vocab_sizes else x.shape[1]) for name, x in self.features.items()}

    @property
    def token_modalities(self) -> tuple[str, ...]:
        """The modalities carried as token ids ``(N, 3, T)``."""
        return tuple(m for m in self.modalities if m in self.vocab_sizes)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{m}={tuple(x.shape[1:])}" for m, x in self.features.items())
        return f"MSADataset(n={self._n}, {shapes}, labels={tuple(self.labels.shape[1:]) or 'scalar'})"


def collate_msa(samples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack samples into a batch.

    Returns:
        dict: each modality ``(B, T_m, D_m)`` float32 (integer samples, token ids, ``(B, 3, T_m)``
        int64), ``"labels"`` ``(B,)`` float or long or ``(B, K)`` long, ``"mask"`` bool ``(B, M)``
        all True, ``"index"`` long ``(B,)``.
    """
    if len(samples) == 0:
        raise ValueError("collate_msa got an empty list of samples")
    first = samples[0]
    for key in ("labels", "index"):
        if key not in first:
            raise KeyError(f"sample is missing {key!r}; keys: {sorted(first)}")
    modalities = [k for k in first if k not in _RESERVED]
    batch: dict[str, torch.Tensor] = {}
    for j, s in enumerate(samples):
        names = [k for k in s if k not in _RESERVED]
        if names != modalities:
            raise KeyError(f"sample {j} has modalities {names}, sample 0 has {modalities}")
    for name in modalities:
        shapes = {tuple(s[name].shape) for s in samples}
        if len(shapes) != 1:
            raise ValueError(f"{name} samples differ in shape within the batch: {sorted(shapes)}")
        x = torch.stack([torch.as_tensor(s[name]) for s in samples])
        batch[name] = x.long() if is_token_tensor(x) else x.float()
    batch["labels"] = torch.stack([torch.as_tensor(s["labels"]) for s in samples])
    batch["mask"] = torch.ones(len(samples), len(modalities), dtype=torch.bool)
    batch["index"] = torch.tensor([int(s["index"]) for s in samples], dtype=torch.long)
    return batch


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    drop_last: bool = False,
    num_workers: int = 0,
) -> DataLoader:
    """A DataLoader with :func:`collate_msa` and a seeded generator (same seed → same order)."""
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    gen = torch.Generator()
    gen.manual_seed(int(seed))
    return DataLoader(
        dataset,
        batch_size=int(batch_size),
        shuffle=shuffle,
        collate_fn=collate_msa,
        generator=gen,
        drop_last=drop_last,
        num_workers=num_workers,
    )


@dataclass
class DataBundle:
    """The three splits of one data set and what a backbone needs to know about it.

    Attributes:
        splits: ``"train"``, ``"valid"``, ``"test"`` → :class:`MSADataset`.
        modalities: modality names in batch/mask order.
        feature_dims: modality → D_m.
        seq_lens: modality → T_m.
        task: ``"regression"`` or ``"classification"``.
        out_dim: 1 for regression; 8 for IEMOCAP's four binary tasks (4 x 2 logits);
            else the number of classes.
        description: which data this is (synthetic generator or a file path).
        name: short name, e.g. ``"synthetic-mosi"`` or the file stem.
        info: free-form provenance (seed, format, ...).
    """

    splits: dict[str, MSADataset]
    modalities: tuple[str, ...]
    feature_dims: dict[str, int]
    seq_lens: dict[str, int]
    task: Task
    out_dim: int
    description: str
    name: str
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if set(self.splits) != set(SPLITS):
            raise KeyError(f"a DataBundle needs splits {list(SPLITS)}, got {sorted(self.splits)}")
        if self.task not in ("regression", "classification"):
            raise ValueError(f"task must be 'regression' or 'classification', got {self.task!r}")
        if self.task == "regression" and self.out_dim != 1:
            raise ValueError(f"a regression bundle has out_dim 1, got {self.out_dim}")
        self.modalities = tuple(self.modalities)
        for split, ds in self.splits.items():
            if ds.modalities != self.modalities:
                raise ValueError(f"split {split!r} has modalities {ds.modalities}, bundle has {self.modalities}")
            if ds.feature_dims != dict(self.feature_dims):
                raise ValueError(f"split {split!r} has feature dims {ds.feature_dims}, bundle has {self.feature_dims}")
            if ds.seq_lens != dict(self.seq_lens):
                raise ValueError(f"split {split!r} has sequence lengths {ds.seq_lens}, bundle has {self.seq_lens}")
        kinds = {split: ds.token_modalities for split, ds in self.splits.items()}
        if len(set(kinds.values())) != 1:
            raise ValueError(f"the splits disagree on which modalities are token ids: {kinds}")

    @property
    def token_modalities(self) -> tuple[str, ...]:
        """The modalities carried as token ids ``(N, 3, T)`` (their ``feature_dims`` entry is the vocabulary size)."""
        return self.splits["train"].token_modalities

    def loader(self, split: str, batch_size: int, shuffle: bool | None = None, seed: int = 0) -> DataLoader:
        """:func:`make_loader` over one split; shuffles the train split by default."""
        if split not in self.splits:
            raise KeyError(f"unknown split {split!r}; splits: {list(SPLITS)}")
        if shuffle is None:
            shuffle = split == "train"
        return make_loader(self.splits[split], batch_size, shuffle=shuffle, seed=seed)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s}={len(self.splits[s])}" for s in SPLITS)
        return (
            f"DataBundle(name={self.name!r}, {sizes}, feature_dims={self.feature_dims}, seq_lens={self.seq_lens}, "
            f"task={self.task!r}, out_dim={self.out_dim})"
        )
