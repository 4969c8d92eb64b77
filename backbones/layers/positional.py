"""Sinusoidal positional embeddings (MulT/fairseq form) and how an encoder numbers its steps."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["POSITION_MODES", "PositionMode", "check_position_mode", "sinusoidal_table", "SinusoidalPositions"]

# How TransformerEncoder numbers its input steps; see its docstring.
POSITION_MODES = ("all", "skip_padding", "skip_padding_renumber")
PositionMode = Literal["all", "skip_padding", "skip_padding_renumber"]


def check_position_mode(positions: str) -> str:
    """``positions`` if it is one of :data:`POSITION_MODES`, else a ValueError naming them."""
    if positions not in POSITION_MODES:
        raise ValueError(f"positions must be one of {', '.join(map(repr, POSITION_MODES))}, got {positions!r}")
    return positions


def sinusoidal_table(length: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """Sinusoidal embeddings of positions ``1..length`` (MulT/fairseq form), ``(length, dim)``.

    Row ``t`` holds ``[sin((t+1) w), cos((t+1) w)]`` with ``w_i = 10000^(-i / (dim/2 - 1))``; an odd
    ``dim`` gets a zero last column.
    """
    half = dim // 2
    rate = math.log(10000.0) / max(half - 1, 1)
    freqs = torch.exp(torch.arange(half, dtype=torch.float32, device=device) * -rate)
    angles = torch.arange(1, length + 1, dtype=torch.float32, device=device)[:, None] * freqs[None, :]
    table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if dim % 2:
        table = F.pad(table, (0, 1))
    return table


class SinusoidalPositions(nn.Module):
    """Cached sinusoidal positional embeddings; ``forward(T)`` gives ``(T, D)``.

    The table is a non-persistent buffer (it follows ``.to()`` and is not saved) and grows to the
    next power of two when a longer sequence arrives.
    """

    def __init__(self, dim: int, init_size: int = 128) -> None:
        super().__init__()
        self.dim = dim
        self.register_buffer("table", sinusoidal_table(init_size, dim), persistent=False)

    def forward(self, length: int) -> torch.Tensor:
        if length > self.table.shape[0]:
            size = 1 << (length - 1).bit_length()
            self.table = sinusoidal_table(size, self.dim, device=self.table.device).to(self.table.dtype)
        return self.table[:length]
