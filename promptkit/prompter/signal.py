"""Missing-signal prompts (paper eq. 3): per modality, one prompt for real input, one for generated.

P_NMS^m is added to modality m's projected sequence where the sample really has m, P_MS^m where
MMGM generated it. Each prompt is ``(l_s, d_m)``; it is stretched over the sequence's T steps by
linear interpolation, so the same prompt serves aligned and unaligned lengths (the authors' code
fixes it to ``(d_m, T_m)``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MissingSignalPrompts(nn.Module):
    """The pair (P_NMS^m, P_MS^m) for each modality.

    Args:
        widths: d_m, the projected width per modality.
        length: l_s, time steps of each prompt.
        init_std: std of the random init (never zero: the missing-type prompts multiply these).
    """

    def __init__(self, widths: dict[str, int], length: int = 16, init_std: float = 0.02) -> None:
        super().__init__()
        self.widths = dict(widths)
        self.real = nn.ParameterDict({m: nn.Parameter(torch.randn(length, d) * init_std) for m, d in widths.items()})
        self.generated = nn.ParameterDict(
            {m: nn.Parameter(torch.randn(length, d) * init_std) for m, d in widths.items()}
        )

    def pair(self, modality: str) -> torch.Tensor:
        """``(2, l_s, d_m)``: index 0 the real-input prompt, index 1 the generated-input prompt."""
        return torch.stack([self.real[modality], self.generated[modality]])

    def select(self, modality: str, generated: torch.Tensor, steps: int | None) -> torch.Tensor:
        """Per-sample prompt: ``(B, T, d_m)``, or ``(B, d_m)`` when ``steps`` is None (vector input).

        Args:
            generated: ``(B,)`` bool, True where the sample's input was generated.
            steps: T, the length of the sequence the prompt is added to.
        """
        p = self.pair(modality)
        if steps is None:
            return pick(p.mean(dim=1), generated)
        if steps != p.shape[1]:
            p = F.interpolate(p.transpose(1, 2), size=steps, mode="linear", align_corners=True).transpose(1, 2)
        return pick(p, generated)

    def add_to(self, modality: str, seq: torch.Tensor, generated: torch.Tensor, layout: str) -> torch.Tensor:
        """``seq`` plus the per-sample prompt, in ``seq``'s own layout (BTD, BDT, TBD or BD)."""
        if layout == "BD":
            return seq + self.select(modality, generated, None).to(seq.dtype)
        steps = seq.shape[0] if layout == "TBD" else seq.shape[-1] if layout == "BDT" else seq.shape[1]
        prompt = self.select(modality, generated, steps).to(seq.dtype)  # (B, T, d)
        if layout == "BDT":
            return seq + prompt.transpose(1, 2)
        if layout == "TBD":
            return seq + prompt.transpose(0, 1)
        return seq + prompt


def pick(pair: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
    """Per sample, ``pair[1]`` where ``generated`` else ``pair[0]``: ``(2, *S)`` → ``(B, *S)``.

    The same values as ``pair[generated.long()]``, with a deterministic backward: the gradient of an
    index with repeated entries accumulates in an order that varies with the CPU threads' timing, so
    two runs of one seeded recipe drifted apart; ``torch.where``'s gradient is a fixed-order sum over
    the batch.
    """
    flag = generated.bool().reshape(-1, *(1,) * (pair.dim() - 1))
    return torch.where(flag, pair[1], pair[0])
