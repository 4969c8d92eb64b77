"""A small test-only backbone (not MulT) with M modalities, and its hook spec as a plain dict."""

from __future__ import annotations

import torch
from torch import nn


class ToyEncoder(nn.Module):
    """Self-attention over a (B, T, D) sequence with an optional key padding mask."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(dim, nhead=2, dim_feedforward=2 * dim, dropout=0.0, batch_first=True)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.layer(x, src_key_padding_mask=key_padding_mask)


class ToyMSA(nn.Module):
    """Conv1d projection (B, d, T) → encoder (B, T, d) → last step → concat → head, per modality."""

    def __init__(self, feature_dims: dict[str, int], dim: int = 8, out_dim: int = 1) -> None:
        super().__init__()
        self.feature_dims = dict(feature_dims)
        self.proj = nn.ModuleDict({m: nn.Conv1d(d, dim, 1, bias=False) for m, d in feature_dims.items()})
        self.enc = nn.ModuleDict({m: ToyEncoder(dim) for m in feature_dims})
        self.head = nn.Sequential(nn.Linear(dim * len(feature_dims), dim), nn.ReLU(), nn.Linear(dim, out_dim))

    def forward(self, **x: torch.Tensor) -> torch.Tensor:
        outs = []
        for m in self.feature_dims:
            h = self.proj[m](x[m].transpose(1, 2)).transpose(1, 2)
            outs.append(self.enc[m](h)[:, -1])
        return self.head(torch.cat(outs, dim=-1))


def toy_spec(modalities, dim: int = 8) -> dict:
    return {
        "features": {m: m for m in modalities},
        "signal": {m: {"path": f"proj.{m}", "layout": "BDT"} for m in modalities},
        "type": [{"path": f"enc.{m}", "layout": "BTD", "width": dim, "padding_mask_arg": "key_padding_mask"} for m in modalities],
        "trainable": ["head"],
        "encoders": {m: {"output": f"enc.{m}", "layout": "BTD", "params": [f"proj.{m}", f"enc.{m}"]} for m in modalities},
    }


def toy_inputs(feature_dims: dict[str, int], batch: int = 6, steps: int = 7, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(batch, steps + i, d, generator=g) for i, (m, d) in enumerate(feature_dims.items())}
