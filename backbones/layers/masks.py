"""Attention masks, True = blocked: MulT's future mask and the combination with key padding."""

from __future__ import annotations

import torch

__all__ = ["combine_masks", "future_mask"]


def combine_masks(
    attn_mask: torch.Tensor | None, key_padding_mask: torch.Tensor | None, batch: int, t_k: int
) -> torch.Tensor | None:
    """One blocked-attention mask from an ``attn_mask`` and a ``key_padding_mask`` (True = blocked).

    Returns None when both are None, else a bool tensor broadcastable to ``(B, H, T_q, T_k)``.
    """
    if key_padding_mask is not None:
        if key_padding_mask.dtype != torch.bool:
            raise TypeError(f"key_padding_mask must be bool (True = pad), got {key_padding_mask.dtype}")
        if key_padding_mask.shape != (batch, t_k):
            raise ValueError(
                f"key_padding_mask must have shape (B, T_k) = ({batch}, {t_k}), got {tuple(key_padding_mask.shape)}"
            )
        pad = key_padding_mask[:, None, None, :]
        return pad if attn_mask is None else attn_mask | pad
    if attn_mask is not None and attn_mask.dtype != torch.bool:
        raise TypeError(f"attn_mask must be bool (True = blocked), got {attn_mask.dtype}")
    return attn_mask


def future_mask(t_q: int, t_k: int, device: torch.device | None = None) -> torch.Tensor:
    """MulT's "future" mask ``(T_q, T_k)``, True = blocked.

    Query ``i`` may see key ``j`` when ``j <= i + |T_k - T_q|``; with equal lengths this is the
    causal mask. The last query always sees every key.
    """
    ones = torch.ones(t_q, t_k, dtype=torch.bool, device=device)
    return torch.triu(ones, diagonal=1 + abs(t_k - t_q))
