"""A small model that is not a promptkit backbone, and factories that build it (or fail to)."""

from __future__ import annotations

import torch
from torch import nn


class Encoder(nn.Module):
    """One self-attention layer over ``(B, T, width)``; ``width`` tells the prompter its token size."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width
        self.layer = nn.TransformerEncoderLayer(width, 2, 2 * width, dropout=0.0, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class ForeignMSA(nn.Module):
    """Per modality: Linear projection → encoder → mean over time; concatenated → MLP head."""

    def __init__(self, feature_dims: dict[str, int], out_dim: int = 1, dim: int = 8) -> None:
        super().__init__()
        self.feature_dims = dict(feature_dims)
        self.proj = nn.ModuleDict({m: nn.Linear(d, dim) for m, d in feature_dims.items()})
        self.enc = nn.ModuleDict({m: Encoder(dim) for m in feature_dims})
        self.head = nn.Sequential(nn.Linear(dim * len(feature_dims), dim), nn.ReLU(), nn.Linear(dim, out_dim))

    def forward(self, **features: torch.Tensor) -> torch.Tensor:
        pooled = [self.enc[m](self.proj[m](features[m])).mean(dim=1) for m in self.proj]
        return self.head(torch.cat(pooled, dim=-1))


def build(feature_dims: dict[str, int], out_dim: int = 1, dim: int = 8) -> ForeignMSA:
    """The factory a recipe names: ``factory = "_foreign_pkg.models:build"`` (no ``task``)."""
    return ForeignMSA(feature_dims, out_dim=out_dim, dim=dim)


def build_again(feature_dims: dict[str, int], out_dim: int = 1, dim: int = 8) -> ForeignMSA:
    """The same model under another factory string (a different backbone to promptkit)."""
    return ForeignMSA(feature_dims, out_dim=out_dim, dim=dim)


def build_without_dims(feature_dims: dict[str, int], dim: int = 8) -> ForeignMSA:
    """A model that does not say its feature sizes (no ``feature_dims`` attribute)."""
    model = ForeignMSA(feature_dims, dim=dim)
    del model.feature_dims
    return model


def not_a_model(**cfg) -> dict:
    return {"cfg": cfg}


def raises(**cfg) -> nn.Module:
    raise RuntimeError("no weights here")


NOT_CALLABLE = 3


def hooks(modalities=("text", "audio", "vision")) -> dict:
    """Its hook spec, the dict a recipe's ``[hooks]`` table spells out."""
    return {
        "features": {m: m for m in modalities},
        "signal": {m: f"proj.{m}" for m in modalities},
        "type": [{"path": f"enc.{m}"} for m in modalities],
        "trainable": ["head"],
        "encoders": {m: {"output": f"enc.{m}", "layout": "BTD", "params": [f"proj.{m}", f"enc.{m}"]} for m in modalities},
    }
