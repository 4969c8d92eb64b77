"""PrompterConfig: what a MissingModalityPrompter builds, as a JSON-round-trippable dataclass."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class PrompterConfig:
    """Configuration of the three MPLMM prompt types.

    Each prompt type can be switched off on its own (the paper's Table 3 ablation).

    Measured effects (``python -m benchmarks.ablation``, mult-synth, validation split, one training
    seed, six-case average, paired difference to the head-only control ± SE over 1000 validation
    samples; the paper's settings as the base, -0.58 ± 0.51): ``init_scale="data", init_std=0.1``
    -0.88 ± 0.52; ``type_positions="prefix"`` -0.72 ± 0.54; ``reconstruction_weight=1`` -1.28 ±
    0.57; ``[prompt] prompt_lr=1e-2`` -1.24 ± 0.47; the three together -0.40 ± 0.54 (the shipped
    recipes' choice); 20 epochs instead of 10 +0.05 ± 0.47. No setting separated the prompts from the
    head-only control by more than 2 SE; the defaults here stay the paper's, the recipes carry the
    choice.
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
    type_source: str = field(
        default="mplmm",
        metadata={
            "help": "Where the missing-type tokens come from. 'mplmm': built from the missing-signal prompts of "
            "each modality (eq. 4-5), linear in M. 'per_case': one learned token set per missing case (MPMM, Lee "
            "et al. 2023), 2**M - 1 sets - the baseline the paper compares with, not MPLMM."
        },
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
    train_backbone: bool = field(
        default=False,
        metadata={
            "help": "Control, not MPLMM: every backbone weight trains (with all prompt types off this is full "
            "fine-tuning at the training missing rate, the paper's MD). The adapter then holds the whole backbone."
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
        if self.type_source not in ("mplmm", "per_case"):
            raise ValueError(f"type_source must be 'mplmm' or 'per_case', got {self.type_source!r}")
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
        if unknown:
            raise KeyError(f"unknown PrompterConfig key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        return cls(**d)
