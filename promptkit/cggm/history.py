"""``CGGMHistory``: the per-step record of B, classifier accuracy, S and the guard (for plots)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class CGGMHistory:
    """Per-step record for plots: ``B[m]``, ``acc[m]`` (NaN when nothing was scored), S, guard."""

    B: dict[str, list[float]]
    acc: dict[str, list[float]]
    S: list[float] = field(default_factory=list)
    guarded: list[bool] = field(default_factory=list)

    @classmethod
    def empty(cls, modalities: Iterable[str]) -> CGGMHistory:
        return cls(B={m: [] for m in modalities}, acc={m: [] for m in modalities})

    def append(
        self, coefficients: Mapping[str, float], accs: Mapping[str, float | None], s: float, guarded: bool
    ) -> None:
        """Record one step; an accuracy of None (nothing scored) is stored as NaN."""
        for m, b in coefficients.items():
            self.B[m].append(b)
            self.acc[m].append(math.nan if accs[m] is None else accs[m])
        self.S.append(s)
        self.guarded.append(guarded)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (NaN → None)."""
        clean = lambda xs: [None if isinstance(x, float) and math.isnan(x) else x for x in xs]
        return {
            "B": {m: list(v) for m, v in self.B.items()},
            "acc": {m: clean(v) for m, v in self.acc.items()},
            "S": clean(self.S),
            "guarded": list(self.guarded),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CGGMHistory:
        nan = lambda xs: [math.nan if x is None else float(x) for x in xs]
        return cls(
            B={m: [float(x) for x in v] for m, v in d["B"].items()},
            acc={m: nan(v) for m, v in d["acc"].items()},
            S=nan(d["S"]),
            guarded=[bool(g) for g in d["guarded"]],
        )
