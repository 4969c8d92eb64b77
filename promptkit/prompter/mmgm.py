"""MMGM: the Missing Modality Generation Module with its generative prompts (paper eq. 1-2).

For every target modality m that is missing in at least one sample of the batch, MMGM builds that
sample's input x̂_m ``(T_m, D_m)`` from the modalities the sample *has*:

1. each source s is mapped to a common width by ``f_s`` (a k=1 convolution + GELU, i.e. a Linear
   over the feature axis), and tagged with a source embedding and a relative-time encoding;
2. the target's learned queries (relative-time encoding of its own T_m steps + a target
   embedding) attend over ``[P_G^m ; f_s(x_s) for available s]`` - the generative prompt P_G^m is
   always there; the samples that miss m are batched by which sources they have (at most
   ``2**(M-1) - 1`` groups, one attention call each), so eq. 1 (one missing) and eq. 2 (two
   missing, one source) are the same vectorised computation and no missing source is attended;
3. a small MLP maps the result back to m's *raw* feature space, so the backbone's own projection
   runs on generated and real inputs alike.

Departures from the authors' code, on purpose: they map time with a Conv1d whose channels are the
sequence lengths (parameters grow with T: 1.12 M on unaligned MOSI shapes) and loop over samples.
Here time is handled by attention over relative positions, so the size does not depend on any
sequence length, any length works at run time, and the batch is processed at once. The source
maps are shared across targets, so MMGM grows linearly in the number of modalities.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def relative_time_encoding(length: int, dim: int, device=None, dtype=None) -> torch.Tensor:
    """Sinusoidal encoding of relative time t / (T - 1) in [0, 1] → ``(T, dim)``.

    Relative, so a 50-step text sequence and a 500-step vision sequence of one utterance line up.
    """
    pos = torch.arange(length, device=device, dtype=torch.float32) / max(length - 1, 1)
    half = dim // 2
    freqs = math.pi * torch.logspace(0, math.log10(256.0), half, device=device, dtype=torch.float32)
    angles = pos[:, None] * freqs[None, :]
    enc = torch.cat([angles.sin(), angles.cos()], dim=-1)
    if enc.shape[-1] < dim:
        enc = F.pad(enc, (0, dim - enc.shape[-1]))
    return enc.to(dtype or torch.float32)


class MissingModalityGenerator(nn.Module):
    """Generates each sample's missing modalities from its available ones.

    Args:
        feature_dims: raw feature size D_m per modality, in mask column order.
        dim: hidden width of the source maps and the attention.
        prompt_length: l_p, tokens of each generative prompt P_G^m.
        heads: attention heads.
        dropout: dropout on the attention output.
        init_std: std of the generative prompts' and embeddings' random init.
    """

    def __init__(
        self,
        feature_dims: dict[str, int],
        dim: int = 32,
        prompt_length: int = 16,
        heads: int = 4,
        dropout: float = 0.0,
        init_std: float = 0.02,
    ) -> None:
        super().__init__()
        self.modalities = tuple(feature_dims)
        self.dim, self.heads, self.dropout = dim, heads, dropout
        m = len(self.modalities)
        self.source_maps = nn.ModuleDict(
            {name: nn.Sequential(nn.Linear(d, dim), nn.GELU()) for name, d in feature_dims.items()}
        )
        self.source_embed = nn.Parameter(torch.randn(m, dim) * init_std)
        self.target_embed = nn.Parameter(torch.randn(m, dim) * init_std)
        self.generative_prompts = nn.ParameterDict(
            {name: nn.Parameter(torch.randn(prompt_length, dim) * init_std) for name in self.modalities}
        )
        self.q_proj = nn.Linear(dim, dim)
        self.kv_proj = nn.Linear(dim, 2 * dim)
        self.out_maps = nn.ModuleDict(
            {
                name: nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, d))
                for name, d in feature_dims.items()
            }
        )

    def modality_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Parameters that belong to one modality (its source map, prompt and output map)."""
        return {
            m: [*self.source_maps[m].parameters(), self.generative_prompts[m], *self.out_maps[m].parameters()]
            for m in self.modalities
        }

    def forward(self, features: dict[str, torch.Tensor], mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Replace missing inputs by generated ones.

        Args:
            features: per modality ``(B, T_m, D_m)``; missing rows must already be zero-filled.
            mask: availability ``(B, M)`` bool, columns in ``self.modalities`` order.

        Returns:
            a new dict: available rows unchanged, missing rows generated.
        """
        missing_cols = (~mask).any(dim=0).tolist()
        if not any(missing_cols):
            return dict(features)
        sources = []
        for i, name in enumerate(self.modalities):
            x = features[name]
            pos = relative_time_encoding(x.shape[1], self.dim, x.device, x.dtype)
            sources.append(self.source_maps[name](x) + pos + self.source_embed[i])  # (B, T_s, dim)

        out = dict(features)
        m = len(self.modalities)
        for i, name in enumerate(self.modalities):
            if not missing_cols[i]:
                continue
            # samples that miss `name`, grouped by which other modalities they have: each group
            # attends only to its available sources, so no key is computed only to be masked out
            others = [j for j in range(m) if j != i]
            bits = 2 ** torch.arange(len(others), device=mask.device)
            code = (mask[:, others].long() * bits).sum(-1).masked_fill_(mask[:, i], -1)  # (B,), -1 = has it
            rows, pieces = [], []
            for c in code[code >= 0].unique().tolist():
                group = (code == c).nonzero().squeeze(1)
                available = [j for k, j in enumerate(others) if c >> k & 1]
                rows.append(group)
                pieces.append(self._generate(i, group, available, sources, features))
            generated = torch.cat(pieces).to(features[name].dtype)
            out[name] = features[name].index_put((torch.cat(rows),), generated)
        return out

    def _generate(self, i: int, rows: torch.Tensor, available: list[int], sources, features) -> torch.Tensor:
        """Target modality i for the samples ``rows``, which all have exactly the modalities
        ``available`` among the others → ``(b, T_i, D_i)``."""
        name = self.modalities[i]
        b, t_target = rows.numel(), features[name].shape[1]
        x = features[name]
        prompt = self.generative_prompts[name].to(x.dtype).expand(b, -1, -1)  # (b, l_p, dim)
        keys = torch.cat([prompt] + [sources[j][rows] for j in available], dim=1)  # (b, L, dim)

        queries = relative_time_encoding(t_target, self.dim, x.device, x.dtype) + self.target_embed[i]
        q = rearrange(self.q_proj(queries), "t (h d) -> h t d", h=self.heads).expand(b, -1, -1, -1)
        k, v = rearrange(self.kv_proj(keys), "b l (two h d) -> two b h l d", two=2, h=self.heads)
        attn = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.out_maps[name](rearrange(attn, "b h t d -> b t (h d)"))
