"""A model nobody here wrote that reads text as token ids and audio through a GRU: its features
exist only at module outputs (``text_encoder``, ``acoustic``), so its hook spec names modules there."""

from __future__ import annotations

import torch
from torch import nn


class TextEncoder(nn.Module):
    """Token ids ``(B, T)`` → ``(B, T, dim)``: an embedding and a small mixing layer. It has no width
    attribute, so its width is measured on a batch. ``calls`` counts its forwards."""

    def __init__(self, vocab: int, dim: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.mix = nn.Sequential(nn.Linear(dim, dim), nn.Tanh())
        self.calls = 0

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.mix(self.embed(ids))


class TokenMSA(nn.Module):
    """text ids → TextEncoder → proj_t; audio → GRU (``(out, h)``) → proj_a; vision → proj_v; the three
    sequences concatenated through one fusion layer, mean-pooled, and a head of bare parameters
    (``linear_head``: an ``nn.Linear`` ``head`` instead, which CGGM needs)."""

    def __init__(self, feature_dims: dict[str, int], out_dim: int = 1, dim: int = 8, linear_head: bool = False) -> None:
        super().__init__()
        self.feature_dims = dict(feature_dims)  # text: the vocabulary size
        self.text_encoder = TextEncoder(feature_dims["text"], dim)
        self.acoustic = nn.GRU(feature_dims["audio"], dim, batch_first=True)
        self.proj_t, self.proj_a = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.proj_v = nn.Linear(feature_dims["vision"], dim)
        self.fusion = nn.TransformerEncoderLayer(dim, 2, 2 * dim, dropout=0.0, batch_first=True)
        self.head_w = nn.Parameter(torch.randn(dim, out_dim) * 0.3)
        self.head_b = nn.Parameter(torch.zeros(out_dim))
        self.head = nn.Linear(dim, out_dim) if linear_head else None

    def token_ids(self, text_ids: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` ids, or MMSA's ``(B, 3, T)`` form (ids, attention mask, segment ids): the ids."""
        return text_ids if text_ids.dim() == 2 else text_ids[:, 0]

    def forward(self, text_ids: torch.Tensor, audio: torch.Tensor, vision: torch.Tensor) -> torch.Tensor:
        t = self.proj_t(self.text_encoder(self.token_ids(text_ids)))
        a = self.proj_a(self.acoustic(audio)[0])
        v = self.proj_v(vision)
        fused = self.fusion(torch.cat([t, a, v], dim=1)).mean(dim=1)
        return self.head(fused) if self.head is not None else fused @ self.head_w + self.head_b


def build(feature_dims: dict[str, int], out_dim: int = 1, dim: int = 8, linear_head: bool = False) -> TokenMSA:
    """The factory a recipe names: ``factory = "_token_backbone:build"``."""
    return TokenMSA(feature_dims, out_dim=out_dim, dim=dim, linear_head=linear_head)


def hooks() -> dict:
    """Its hook spec, as a recipe's ``[hooks]`` table spells it."""
    return {
        "features": {
            "text": {"path": "text_encoder", "layout": "BTD", "arg": "text_ids"},
            "audio": {"path": "acoustic", "layout": "BTD", "index": 0},
            "vision": "vision",
        },
        "signal": {"text": "proj_t", "audio": "proj_a", "vision": "proj_v"},
        "type": [{"path": "fusion"}],
        "trainable": ["head_w", "head_b"],
        "encoders": {"text": {"output": "proj_t", "layout": "BTD", "params": ["text_encoder", "proj_t"]},
                     "audio": {"output": "proj_a", "layout": "BTD", "params": ["acoustic", "proj_a"]},
                     "vision": {"output": "proj_v", "layout": "BTD", "params": ["proj_v"]}},
    }
