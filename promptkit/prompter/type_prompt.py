"""Missing-type prompts (paper eq. 4-5): tokens that tell an encoder which modalities are missing.

For a sample, MP = Σ_m P^m · M_m, where P^m is modality m's missing-signal prompt (real or
generated, ``(l_s, d_m)``) and M_m a ``(d_m, d_t)`` matrix; then the tokens are
P'_MT = P_MT · MP with P_MT ``(l_p, l_s)``, giving ``(l_p, d_t)`` tokens of the target's width.
Parameters grow linearly in M (one M_m per modality and target width), where per-case prompt sets
(MPMM) grow as ``2**M - 1``.

Initialisation: every factor is small and random. The authors' code set both P and M to zero, so
neither factor ever received a gradient (their issue 15); here P_MT, M_m and the signal prompts all
get a gradient from the first step.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .signal import pick


class MissingTypePrompts(nn.Module):
    """P_MT per type target, and the maps M_m shared by targets of the same width.

    Args:
        signal_widths: d_m per modality (the widths of the missing-signal prompts).
        target_widths: d_t of each type target, in spec order.
        length: l_p, tokens per target.
        signal_length: l_s, time steps of the missing-signal prompts.
    """

    def __init__(
        self, signal_widths: dict[str, int], target_widths: list[int], length: int = 16, signal_length: int = 16
    ) -> None:
        super().__init__()
        self.modalities = tuple(signal_widths)
        self.target_widths = list(target_widths)
        self.type_prompts = nn.ParameterList(
            [nn.Parameter(torch.randn(length, signal_length) / math.sqrt(signal_length)) for _ in target_widths]
        )
        self.modality_maps = nn.ParameterDict(
            {
                _key(m, w): nn.Parameter(torch.randn(d, w) / math.sqrt(d))
                for m, d in signal_widths.items()
                for w in sorted(set(target_widths))
            }
        )

    def modality_parameters(self) -> dict[str, list[nn.Parameter]]:
        return {m: [p for k, p in self.modality_maps.items() if k.rsplit("_", 1)[0] == m] for m in self.modalities}

    def forward(self, signal_pairs: dict[str, torch.Tensor], generated: torch.Tensor) -> list[torch.Tensor]:
        """Tokens for every type target.

        Args:
            signal_pairs: per modality ``(2, l_s, d_m)`` (real, generated) signal prompts.
            generated: ``(B, M)`` bool, True where modality m of sample b was generated/missing.

        Returns:
            one ``(B, l_p, d_t)`` tensor per target.
        """
        mp: dict[int, torch.Tensor] = {}
        for w in sorted(set(self.target_widths)):
            per_modality = [
                pick(signal_pairs[m] @ self.modality_maps[_key(m, w)], generated[:, i])  # (B, l_s, w)
                for i, m in enumerate(self.modalities)
            ]
            mp[w] = torch.stack(per_modality).sum(0)
        return [torch.einsum("pl,blw->bpw", p, mp[w]) for p, w in zip(self.type_prompts, self.target_widths)]


def _key(modality: str, width: int) -> str:
    return f"{modality}_{width}"
