"""Modality sets, availability masks and missing cases.

A *modality set* is an ordered tuple of names, by default ``("text", "audio", "vision")``.
An *availability mask* is a bool tensor ``(B, M)``: ``mask[b, m]`` is True when sample ``b``
has modality ``m``. A *case* is the set of available modalities; with M modalities there are
``2**M - 1`` non-empty cases. Case ids are stable: a case's id is its bitmask over the modality
order minus one (text=1, audio=2, vision=4 → ``{t}`` is 0, ``{a,t,v}`` is 6).

The paper's training protocol: with probability ``eta`` a sample gets one of the *incomplete*
cases uniformly at random, else it is complete; re-drawn every epoch from a seeded generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import torch

DEFAULT_MODALITIES: tuple[str, ...] = ("text", "audio", "vision")


@dataclass(frozen=True)
class MissingCase:
    """One non-empty set of available modalities.

    Attributes:
        id: stable id, ``bitmask - 1`` over the modality order.
        available: names of the modalities present, in modality order.
        missing: names of the modalities absent, in modality order.
    """

    id: int
    available: tuple[str, ...]
    missing: tuple[str, ...]

    @property
    def name(self) -> str:
        """Readable name by initials of the available modalities, sorted: ``{a,t}``."""
        return "{" + ",".join(sorted(n[0] for n in self.available)) + "}"

    @property
    def complete(self) -> bool:
        return not self.missing


class ModalitySet:
    """An ordered set of modality names with case enumeration and mask helpers.

    Args:
        names: modality names in the order the mask's columns follow.
    """

    def __init__(self, names: Sequence[str] = DEFAULT_MODALITIES) -> None:
        names = tuple(names)
        if len(names) < 1:
            raise ValueError("a modality set needs at least one modality")
        if len(set(names)) != len(names):
            raise ValueError(f"modality names must be unique, got {names}")
        for n in names:
            if not isinstance(n, str) or not n.isidentifier():
                raise ValueError(f"modality name {n!r} must be a Python identifier")
        self.names = names
        self._cases = [self._case_from_bits(bits) for bits in range(1, 2 ** len(names))]

    # --- basic lookups -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self):
        return iter(self.names)

    def __repr__(self) -> str:
        return f"ModalitySet({self.names})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ModalitySet) and other.names == self.names

    def __hash__(self) -> int:
        return hash(self.names)

    def index(self, name: str) -> int:
        """Column of ``name`` in the mask; an unknown name is an error listing the known ones."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"unknown modality {name!r}; known modalities: {list(self.names)}") from None

    def validate_names(self, names: Iterable[str]) -> None:
        for n in names:
            self.index(n)

    # --- cases ---------------------------------------------------------------------------
    def _case_from_bits(self, bits: int) -> MissingCase:
        avail = tuple(n for i, n in enumerate(self.names) if bits >> i & 1)
        miss = tuple(n for i, n in enumerate(self.names) if not bits >> i & 1)
        return MissingCase(id=bits - 1, available=avail, missing=miss)

    @property
    def cases(self) -> list[MissingCase]:
        """All ``2**M - 1`` non-empty cases, ordered by id (the complete case is last)."""
        return list(self._cases)

    @property
    def incomplete_cases(self) -> list[MissingCase]:
        """The ``2**M - 2`` cases with at least one modality missing."""
        return [c for c in self._cases if not c.complete]

    @property
    def complete_case(self) -> MissingCase:
        return self._cases[-1]

    def case(self, key: int | str | Iterable[str]) -> MissingCase:
        """Look a case up by id, by name (``"{a,t}"``) or by the available modality names."""
        if isinstance(key, int):
            if not 0 <= key < len(self._cases):
                raise KeyError(f"case id {key} out of range 0..{len(self._cases) - 1}")
            return self._cases[key]
        if isinstance(key, str) and key.startswith("{"):
            for c in self._cases:
                if c.name == key:
                    return c
            raise KeyError(f"unknown case {key!r}; known: {[c.name for c in self._cases]}")
        names = [key] if isinstance(key, str) else list(key)
        self.validate_names(names)
        if not names:
            raise ValueError("a case needs at least one available modality")
        bits = sum(1 << self.index(n) for n in names)
        return self._cases[bits - 1]

    # --- masks ---------------------------------------------------------------------------
    def case_mask(self, case: int | str | Iterable[str] | MissingCase, batch_size: int) -> torch.Tensor:
        """The mask ``(B, M)`` of one fixed case for every sample (evaluation protocol)."""
        c = case if isinstance(case, MissingCase) else self.case(case)
        row = torch.tensor([n in c.available for n in self.names], dtype=torch.bool)
        return row.expand(batch_size, -1).clone()

    def complete_mask(self, batch_size: int) -> torch.Tensor:
        return torch.ones(batch_size, len(self), dtype=torch.bool)

    def masks_from_case_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Case ids ``(B,)`` → masks ``(B, M)``."""
        bits = ids.long() + 1
        shifts = torch.arange(len(self), device=ids.device)
        return (bits[:, None] >> shifts[None, :]) & 1 == 1

    def case_ids_from_masks(self, mask: torch.Tensor) -> torch.Tensor:
        """Masks ``(B, M)`` → case ids ``(B,)``; an all-missing row is an error naming it."""
        check_mask(mask, len(self))
        weights = 2 ** torch.arange(len(self), device=mask.device)
        return (mask.long() * weights).sum(-1) - 1

    def sample_masks(self, n: int, eta: float, generator: torch.Generator | None = None) -> torch.Tensor:
        """The paper's protocol: each sample is incomplete with probability ``eta``.

        An incomplete sample gets one of the ``2**M - 2`` incomplete cases uniformly.

        Returns:
            mask ``(n, M)`` bool.
        """
        if not 0.0 <= float(eta) <= 1.0:
            raise ValueError(f"missing rate eta must lie in [0, 1], got {eta}")
        ids = torch.full((n,), self.complete_case.id, dtype=torch.long)
        incomplete = torch.tensor([c.id for c in self.incomplete_cases], dtype=torch.long)
        if len(incomplete) == 0 or n == 0:
            return self.masks_from_case_ids(ids)
        drop = torch.rand(n, generator=generator) < eta
        pick = torch.randint(len(incomplete), (n,), generator=generator)
        ids = torch.where(drop, incomplete[pick], ids)
        return self.masks_from_case_ids(ids)


def check_mask(mask: torch.Tensor, num_modalities: int, batch_size: int | None = None) -> None:
    """Raise a clear error if ``mask`` is not a usable availability mask ``(B, M)``."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"availability mask must be a torch.Tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(f"availability mask must have dtype torch.bool, got {mask.dtype}")
    if mask.dim() != 2 or mask.shape[1] != num_modalities:
        raise ValueError(f"availability mask must have shape (B, {num_modalities}), got {tuple(mask.shape)}")
    if batch_size is not None and mask.shape[0] != batch_size:
        raise ValueError(f"availability mask has {mask.shape[0]} rows but the batch has {batch_size} samples")
    empty = (~mask.any(dim=1)).nonzero().flatten()
    if len(empty):
        raise ValueError(
            f"sample(s) {empty[:10].tolist()} have every modality missing; at least one must be available"
        )
