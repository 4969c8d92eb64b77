"""A kernel-size-1 convolution computed as one matmul."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PointwiseConv1d"]


class PointwiseConv1d(nn.Conv1d):
    """A kernel-size-1 ``nn.Conv1d`` ``(B, C_in, T) → (B, C_out, T)`` computed as one matmul.

    Same parameters and state dict as ``nn.Conv1d(C_in, C_out, 1)``. Given the usual transposed
    view of a ``(B, T, C_in)`` tensor it copies nothing, and its output is the transposed view of
    a ``(B, T, C_out)`` tensor, so transposing back is free too.
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input (B, {self.in_channels}, T), got {tuple(x.shape)}")
        return F.linear(x.transpose(1, 2), self.weight[:, :, 0], self.bias).transpose(1, 2)
