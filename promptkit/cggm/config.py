"""``CGGMConfig``: CGGM's hyper-parameters, validated where they enter (a recipe's ``[cggm]`` table)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any


def is_number(v: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def is_int(v: Any) -> bool:
    """An int (not a bool)."""
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass
class CGGMConfig:
    """Hyper-parameters of CGGM (defaults: the paper's MOSI settings)."""

    rho: float = field(default=1.3, metadata={"help": "ρ: global gain on the modulated gradients (paper: 1.3)."})
    lam: float = field(default=0.2, metadata={"help": "λ: weight of the direction term L_gm (0 switches it off)."})
    classifier_lr: float = field(default=5e-4, metadata={"help": "Adam learning rate of the unimodal classifiers."})
    classifier_hidden: int | None = field(
        default=None,
        metadata={
            "help": "Hidden width of each classifier (Linear→ReLU→Linear). None: the head's input width, "
            "so L_gm can compare output layers (the paper's 40 is its model width)."
        },
    )
    eps: float = field(
        default=1e-6,
        metadata={"help": "Guard: |S| below this gives B = 1 for the step (S is a sum of multiples of 1/n)."},
    )
    b_max: float = field(default=2.0, metadata={"help": "Upper bound on B (B is clipped to [0, b_max]); ≥ 1."})
    task: str | None = field(
        default=None, metadata={"help": "'regression' or 'classification'; None reads the backbone's `task`."}
    )
    warmup_steps: int = field(
        default=0, metadata={"help": "Steps at the start with B = 1 while the classifiers learn (ε still tracked)."}
    )
    head: str | None = field(
        default=None,
        metadata={
            "help": "Module path of the fused head's final nn.Linear; None: the last nn.Linear in HookSpec.trainable."
        },
    )
    seed: int = field(default=0, metadata={"help": "Seed of the classifiers' init (the global RNG is left untouched)."})

    def __post_init__(self) -> None:
        for name, low in (("rho", 0.0), ("classifier_lr", 0.0), ("eps", 0.0)):
            value = getattr(self, name)
            if not is_number(value) or not value > low:
                raise ValueError(f"CGGMConfig.{name} must be a number > {low}, got {value!r}")
        if not is_number(self.lam) or self.lam < 0:
            raise ValueError(f"CGGMConfig.lam must be a number ≥ 0, got {self.lam!r}")
        if not is_number(self.b_max) or self.b_max < 1:
            raise ValueError(
                f"CGGMConfig.b_max must be ≥ 1 (the guard's B = 1 must lie inside the bound), got {self.b_max!r}"
            )
        if self.classifier_hidden is not None and (not is_int(self.classifier_hidden) or self.classifier_hidden < 1):
            raise ValueError(
                f"CGGMConfig.classifier_hidden must be a positive int or None, got {self.classifier_hidden!r}"
            )
        if self.task not in (None, "regression", "classification"):
            raise ValueError(f"CGGMConfig.task must be 'regression', 'classification' or None, got {self.task!r}")
        if not is_int(self.warmup_steps) or self.warmup_steps < 0:
            raise ValueError(f"CGGMConfig.warmup_steps must be an int ≥ 0, got {self.warmup_steps!r}")
        if self.head is not None and not isinstance(self.head, str):
            raise TypeError(f"CGGMConfig.head must be a module path string or None, got {type(self.head).__name__}")
        if not is_int(self.seed):
            raise TypeError(f"CGGMConfig.seed must be an int, got {self.seed!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CGGMConfig:
        """Build from a plain dict; an unknown key is a ``KeyError`` listing the allowed ones."""
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(allowed))
        if unknown:
            raise KeyError(f"unknown CGGM key(s) {unknown}; allowed keys: {allowed}")
        return cls(**d)
