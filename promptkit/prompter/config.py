"""PrompterConfig: what a MissingModalityPrompter builds, as a JSON-round-trippable dataclass."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any


@dataclass
class PrompterConfig:
    """Configuration of the three MPLMM prompt types.

    Each prompt type can be switched off on its own (the paper's Table 3 ablation).
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
    check_inputs: bool = field(
        default=True, metadata={"help": "Raise on NaN/inf in available input features (one reduction per input)."}
    )

    def __post_init__(self) -> None:
        if not isinstance(self.prompt_length, int) or self.prompt_length < 1:
            raise ValueError(f"prompt_length must be a positive int, got {self.prompt_length!r}")
        if self.mmgm_dim < 1 or self.mmgm_heads < 1 or self.mmgm_dim % self.mmgm_heads:
            raise ValueError(
                f"mmgm_heads ({self.mmgm_heads}) must divide mmgm_dim ({self.mmgm_dim}), both positive"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        if self.reconstruction_weight < 0:
            raise ValueError(f"reconstruction_weight must be >= 0, got {self.reconstruction_weight}")
        if self.init_std <= 0:
            raise ValueError(f"init_std must be positive (zero-initialised prompts never train), got {self.init_std}")

    @property
    def any_prompts(self) -> bool:
        return self.generative or self.signal or self.type

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PrompterConfig":
        allowed = {f.name for f in fields(cls)}
        unknown = set(d) - allowed
        if unknown:
            raise KeyError(f"unknown PrompterConfig key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        return cls(**d)

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))
