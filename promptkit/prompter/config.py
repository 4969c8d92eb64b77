"""PrompterConfig: what a MissingModalityPrompter builds, as a JSON-round-trippable dataclass."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class PrompterConfig:
    """Configuration of the three MPLMM prompt types.

    Each prompt type can be switched off on its own (the paper's Table 3 ablation).

    These are MPLMM's own options; other methods on the same wrapper (MPMM's per-case prompts, the
    controls) are subclasses of :class:`~promptkit.MissingModalityPrompter` in
    :mod:`promptkit.methods`. What each option measured is in ``docs/methods.md``.
    """

    prompt_length: int = field(default=16, metadata={"help": "l_p: tokens per prompt (paper: 16, Fig. 7)."})
    generative: bool = field(
        default=True, metadata={"help": "Generative prompts + MMGM: generate missing inputs (eq. 1-2)."}
    )
    signal: bool = field(
        default=True, metadata={"help": "Missing-signal prompts added to each projected sequence (eq. 3)."}
    )
    type: bool = field(
        default=True, metadata={"help": "Missing-type prompts as extra encoder tokens (eq. 4-5)."}
    )
    type_positions: str = field(
        default="shift",
        metadata={
            "help": "Positional numbering around the missing-type tokens. 'shift': they are ordinary leading "
            "steps, so the real steps sit at positions l_p+1..l_p+T. 'prefix': they get no positional embedding "
            "and the real steps keep positions 1..T, as without prompts (each type target needs prefix_len_arg)."
        },
    )
    mmgm_dim: int = field(default=32, metadata={"help": "Hidden width of MMGM's source maps and attention."})
    mmgm_heads: int = field(default=4, metadata={"help": "Attention heads in MMGM; must divide mmgm_dim."})
    init_std: float = field(
        default=0.02, metadata={"help": "Std of the random init of every prompt tensor (none starts at zero)."}
    )
    dropout: float = field(default=0.0, metadata={"help": "Dropout on MMGM's attention output."})
    reconstruction_weight: float = field(
        default=0.0,
        metadata={
            "help": "promptkit extension, off in the paper: weight of an MSE loss between MMGM's output and "
            "the real features of modalities that were dropped on purpose (simulated missingness only)."
        },
    )
    init_scale: str = field(
        default="fixed",
        metadata={
            "help": "'fixed': every prompt starts at std init_std. 'data': init_std is relative to the tensor a "
            "prompt joins, measured on one training batch before training (calibrate_init): signal prompts to the "
            "RMS of the projected sequence, type tokens to the RMS of the encoder input, MMGM's output to the "
            "features' scale."
        },
    )
    check_inputs: bool = field(
        default=True, metadata={"help": "Raise on NaN/inf in available input features (one reduction per input)."}
    )

    def __post_init__(self) -> None:
        self._check_types()
        if self.prompt_length < 1:
            raise ValueError(f"prompt_length must be a positive int, got {self.prompt_length!r}")
        if self.mmgm_dim < 1 or self.mmgm_heads < 1 or self.mmgm_dim % self.mmgm_heads:
            raise ValueError(
                f"mmgm_heads ({self.mmgm_heads}) must divide mmgm_dim ({self.mmgm_dim}), both positive"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        if self.reconstruction_weight < 0:
            raise ValueError(f"reconstruction_weight must be >= 0, got {self.reconstruction_weight}")
        if self.init_scale not in ("fixed", "data"):
            raise ValueError(f"init_scale must be 'fixed' or 'data', got {self.init_scale!r}")
        if self.type_positions not in ("shift", "prefix"):
            raise ValueError(f"type_positions must be 'shift' or 'prefix', got {self.type_positions!r}")
        if self.init_std <= 0:
            raise ValueError(f"init_std must be positive (zero-initialised prompts never train), got {self.init_std}")

    def _check_types(self) -> None:
        """Every value has its field's type (a string ``"false"`` is not a bool; ``True`` is not an
        int) and every float is finite, so nothing is silently coerced or fails later as NaN."""
        for f in fields(self):
            value, kind = getattr(self, f.name), f.type if isinstance(f.type, str) else f.type.__name__
            if kind == "bool":
                ok = isinstance(value, bool)
            elif kind == "int":
                ok = isinstance(value, int) and not isinstance(value, bool)
            elif kind == "float":
                ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                if ok:
                    setattr(self, f.name, float(value))
            else:
                ok = isinstance(value, str)
            if not ok:
                article = {"int": "an int", "float": "a finite float"}.get(kind, f"a {kind}")
                raise TypeError(f"PrompterConfig.{f.name} must be {article}, "
                                f"got {value!r} ({type(value).__name__})")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PrompterConfig:
        allowed = {f.name for f in fields(cls)}
        unknown = set(d) - allowed
        moved = {k: _MOVED[k] for k in sorted(unknown) if k in _MOVED}
        if moved:
            raise KeyError("PrompterConfig no longer has " + "; ".join(f"{k!r}: {why}" for k, why in moved.items()))
        if unknown:
            raise KeyError(f"unknown PrompterConfig key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        return cls(**d)


_MOVED: dict[str, str] = {
    "type_source": "per-case prompt sets are the method \"mpmm\" (promptkit.methods.mpmm), not an MPLMM option",
    "train_backbone": "training every backbone weight is the control \"full_finetune\" (promptkit.methods.controls)",
}
"""Keys older promptkit had, refused naming what replaced them."""
