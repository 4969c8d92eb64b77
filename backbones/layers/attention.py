"""Multi-head attention with one input projection for q, k and v, through SDPA or the blockwise path."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from . import blockwise as _blockwise
from ._helpers import _check_p, _xavier_linear
from .blockwise import dropout_attention
from .masks import combine_masks, future_mask

__all__ = ["MultiheadAttention"]


class MultiheadAttention(nn.Module):
    """Multi-head attention with one input projection for q, k and v.

    Self-attention (``key is None``) projects the input once into q, k, v. Cross-attention
    projects the query with the q rows and the key/value input with the k, v rows of the same
    weight, so one module serves both (and holds MulT's parameter count).

    Args:
        embed_dim: model width E; must divide by ``num_heads``.
        num_heads: number of heads H.
        dropout: dropout on the attention weights (training only).
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} must be divisible by num_heads {num_heads}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.dropout = _check_p("attention dropout", dropout)
        self.in_proj = _xavier_linear(embed_dim, 3 * embed_dim)  # rows: [q; k; v]
        self.out_proj = _xavier_linear(embed_dim, embed_dim)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor | None = None,
        value: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
    ) -> torch.Tensor:
        """Attend from ``query`` to ``key``/``value``.

        Args:
            query: ``(B, T_q, E)``.
            key: ``(B, T_k, E)``; None for self-attention.
            value: ``(B, T_k, E)``; None means ``key`` (the usual crossmodal case).
            key_padding_mask: bool ``(B, T_k)``, True at padded keys.
            attn_mask: bool, True where attention is blocked, broadcastable to
                ``(B, H, T_q, T_k)``, e.g. ``(T_q, T_k)`` or ``(B, 1, T_q, T_k)``.
            is_causal: block keys after the query's own step (needs ``T_q == T_k`` and no mask).

        Returns:
            ``(B, T_q, E)``.
        """
        E, H = self.embed_dim, self.num_heads
        w, b = self.in_proj.weight, self.in_proj.bias
        if key is None:
            if value is not None:
                raise ValueError("value given without key; pass key (and value) for cross-attention")
            q, k, v = rearrange(self.in_proj(query), "b t (three h d) -> three b h t d", three=3, h=H)
        else:
            q = rearrange(F.linear(query, w[:E], b[:E]), "b t (h d) -> b h t d", h=H)
            if value is None or value is key:
                kv = F.linear(key, w[E:], b[E:])
                k, v = rearrange(kv, "b t (two h d) -> two b h t d", two=2, h=H)
            else:
                k = rearrange(F.linear(key, w[E : 2 * E], b[E : 2 * E]), "b t (h d) -> b h t d", h=H)
                v = rearrange(F.linear(value, w[2 * E :], b[2 * E :]), "b t (h d) -> b h t d", h=H)
        blocked = combine_masks(attn_mask, key_padding_mask, batch=q.shape[0], t_k=k.shape[2])
        if is_causal and (blocked is not None or q.shape[2] != k.shape[2]):
            raise ValueError("is_causal needs T_q == T_k and no other mask; pass future_mask(...) as attn_mask")
        p = self.dropout if self.training else 0.0
        if _blockwise._BLOCKWISE and 0.0 < p < 1.0 and q.device.type == "cpu" and not torch.compiler.is_compiling():
            if is_causal:
                blocked = future_mask(q.shape[2], k.shape[2], q.device)
            out = dropout_attention(q, k, v, p, blocked)
        else:
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=None if blocked is None else ~blocked, dropout_p=p, is_causal=is_causal
            )
        return self.out_proj(rearrange(out, "b h t d -> b t (h d)"))
