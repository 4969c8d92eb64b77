"""A model of your own through ``promptkit run``: the factory ``examples/custom-backbone.toml`` names.

Nothing here is promptkit-specific: an ``nn.Module`` taking one keyword tensor ``(B, T_m, D_m)``
per modality and returning ``(B, out_dim)``. The recipe's ``[hooks]`` table says where the prompts
attach (module paths of ``named_modules()``)::

    promptkit run --recipe examples/custom-backbone.toml

promptkit finds this file beside the recipe (``factory = "custom_backbone:build"``); an installed
package is named the same way (``factory = "mypkg.models:build"``).
"""

from __future__ import annotations

import torch
from torch import nn


class Encoder(nn.Module):
    """One self-attention layer over ``(B, T, width)``. The type prompts join its input as extra
    tokens; ``width`` tells promptkit their size."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.width = width
        self.layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.1, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class LateFusion(nn.Module):
    """Per modality: Linear projection (the signal prompts are added to its output) → encoder →
    mean over time; the modalities concatenated → MLP head (trained with the prompts)."""

    def __init__(self, feature_dims: dict[str, int], out_dim: int = 1, dim: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.feature_dims = dict(feature_dims)  # optional: promptkit also takes the sizes from the data
        self.proj = nn.ModuleDict({m: nn.Linear(d, dim) for m, d in feature_dims.items()})
        self.enc = nn.ModuleDict({m: Encoder(dim, heads) for m in feature_dims})
        self.head = nn.Sequential(nn.Linear(dim * len(feature_dims), dim), nn.ReLU(), nn.Linear(dim, out_dim))

    def forward(self, **features: torch.Tensor) -> torch.Tensor:
        pooled = [self.enc[m](self.proj[m](features[m])).mean(dim=1) for m in self.feature_dims]
        return self.head(torch.cat(pooled, dim=-1))


def build(feature_dims: dict[str, int], out_dim: int = 1, dim: int = 32, heads: int = 4) -> LateFusion:
    """Called with ``[backbone.config]`` (``dim``, ``heads``) plus ``feature_dims`` and ``out_dim``
    from the data; ``task`` is passed too when the signature names it."""
    return LateFusion(feature_dims, out_dim=out_dim, dim=dim, heads=heads)
