"""Modality sets, availability masks and missing cases.

A *modality set* is an ordered tuple of names, by default ``("text", "audio", "vision")``.
An *availability mask* is a bool tensor ``(B, M)``: ``mask[b, m]`` is True when sample ``b``
has modality ``m``. A *case* is the set of available modalities; with M modalities there are
``2**M - 1`` non-empty cases. Case ids are stable: a case's id is its bitmask over the modality
order minus one (text=1, audio=2, vision=4 → ``{t}`` is 0, ``{a,t,v}`` is 6).

A case's *name* lists the available modalities by abbreviation, sorted: ``{a,t}``. A modality's
abbreviation is the shortest prefix of its name that no other name of the set starts with (its
whole name when every prefix is shared), so names are unique within a set and map 1:1 to case ids:
text/audio/vision (or any set whose initials differ) keep their initials (``{a,t}``), while
text/thermal give ``te``/``th`` and pose/physio ``po``/``ph`` (``{ph,po,t}``).

The paper's training protocol: with probability ``eta`` a sample gets one of the *incomplete*
cases uniformly at random, else it is complete; re-drawn every epoch from a seeded generator.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

DEFAULT_MODALITIES: tuple[str, ...] = ("text", "audio", "vision")


@dataclass(frozen=True)
class MissingCase:
    """One non-empty set of available modalities.

    Attributes:
        id: stable id, ``bitmask - 1`` over the modality order.
        available: names of the modalities present, in modality order.
        missing: names of the modalities absent, in modality order.
        abbrevs: the abbreviations :attr:`name` uses, one per available modality (in the order of
            ``available``); filled in by :class:`ModalitySet`, which knows the other names.
            ``None`` (a case built by hand): first initials.
    """

    id: int
    available: tuple[str, ...]
    missing: tuple[str, ...]
    abbrevs: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.abbrevs is not None and len(self.abbrevs) != len(self.available):
            raise ValueError(
                f"abbrevs {self.abbrevs} must give one abbreviation per available modality {self.available}"
            )

    @property
    def name(self) -> str:
        """Readable name by the abbreviations of the available modalities, sorted: ``{a,t}``."""
        short = self.abbrevs if self.abbrevs is not None else tuple(n[0] for n in self.available)
        return "{" + ",".join(sorted(short)) + "}"

    @property
    def complete(self) -> bool:
        return not self.missing


def abbreviations(names: Sequence[str]) -> dict[str, str]:
    """Each name's shortest prefix that no other name starts with (the whole name if none is).

    ``("text", "audio", "vision")`` → ``t, a, v``; ``("pose", "physio")`` → ``po, ph``;
    ``("a", "ab")`` → ``a, ab``. The abbreviations are pairwise distinct.
    """
    out = {}
    for n in names:
        others = [o for o in names if o != n]
        k = next((k for k in range(1, len(n) + 1) if not any(o.startswith(n[:k]) for o in others)), len(n))
        out[n] = n[:k]
    return out


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
        self.abbrevs: dict[str, str] = abbreviations(names)
        """modality name → the abbreviation case names use (see :func:`abbreviations`)."""
        self._cases = [self._case_from_bits(bits) for bits in range(1, 2 ** len(names))]
        self._by_name = {c.name: c for c in self._cases}
        if len(self._by_name) != len(self._cases):  # abbreviations() guarantees it; keep it checked
            raise AssertionError(f"case names of {names} are not unique: {[c.name for c in self._cases]}")

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
        return MissingCase(id=bits - 1, available=avail, missing=miss, abbrevs=tuple(self.abbrevs[n] for n in avail))

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
        """Look a case up by id, by name (``"{a,t}"``, ``"{po,t}"``; abbreviations or full names in
        any order), by ``"complete"``, or by the available modality names (``["text", "audio"]``)."""
        if isinstance(key, bool):
            raise TypeError(f"a case key must be an id, a name or modality names, got {key!r}")
        if isinstance(key, int):
            if not 0 <= key < len(self._cases):
                raise KeyError(f"case id {key} out of range 0..{len(self._cases) - 1}")
            return self._cases[key]
        if isinstance(key, str) and key == "complete" and key not in self.names:
            return self.complete_case
        if isinstance(key, str) and key.startswith("{"):
            return self._case_by_name(key)
        names = [key] if isinstance(key, str) else list(key)
        self.validate_names(names)
        if not names:
            raise ValueError("a case needs at least one available modality")
        bits = sum(1 << self.index(n) for n in set(names))
        return self._cases[bits - 1]

    def _case_by_name(self, key: str) -> MissingCase:
        if key in self._by_name:
            return self._by_name[key]
        known = f"known: {list(self._by_name)}"
        if not key.endswith("}"):
            raise KeyError(f"unknown case {key!r}; a case name looks like '{{a,t}}'; {known}")
        full = {a: n for n, a in self.abbrevs.items()}
        parts = [p.strip() for p in key[1:-1].split(",")]
        resolved = [full.get(p, p) for p in parts]
        bad = [p for p, r in zip(parts, resolved) if r not in self.names]
        if bad or not parts or len(set(resolved)) != len(resolved):
            why = f"{bad} name no modality of {list(self.names)}" if bad else "modalities repeat or are empty"
            raise KeyError(f"unknown case {key!r} ({why}); abbreviations {self.abbrevs}; {known}")
        return self.case(resolved)

    def case_id(self, key: int | str | Iterable[str] | MissingCase) -> int:
        """The stable id of a case given by name (``"{a,t}"`` → 2), ``"complete"``, id or names."""
        return key.id if isinstance(key, MissingCase) else self.case(key).id

    def case_name(self, key: int | str | Iterable[str] | MissingCase) -> str:
        """The unique name of a case given by id (2 → ``"{a,t}"``), by names or by a name."""
        return self._cases[self.case_id(key)].name

    @property
    def case_names(self) -> dict[int, str]:
        """Case id → name for every case, in id order (the complete case last)."""
        return {c.id: c.name for c in self._cases}

    def abbreviation_legend(self) -> str:
        """``"t = text, a = audio, v = vision"``: what the case names' abbreviations stand for."""
        return ", ".join(f"{a} = {n}" for n, a in self.abbrevs.items())

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
