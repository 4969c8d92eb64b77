"""A small batch-first transformer encoder in MulT's form (Tsai et al. 2019).

Everything is batch first, ``(B, T, D)``. Attention runs through
:func:`torch.nn.functional.scaled_dot_product_attention`, so the fused kernels are used
where the device has them. One exception: PyTorch's fused CPU kernel has no dropout, and its
fallback materialises every ``(B, H, T_q, T_k)`` score tensor several times over; training with
attention dropout on a CPU therefore goes through :func:`dropout_attention`, a blockwise
(flash-style) attention that recomputes its blocks in the backward pass.

Masks follow :class:`torch.nn.MultiheadAttention`: a bool ``key_padding_mask`` ``(B, T_k)``
is True at padded keys, and a bool ``attn_mask`` is True where attention is *blocked*.

Differences from MulT's released encoder, none of which changes the function in the usual case:

- key and value share one input (one layer norm, one embedding dropout), where MulT draws two
  embedding-dropout masks for the same tensor;
- padding is given by ``key_padding_mask`` instead of being guessed from ``x[..., 0] == 0``;
  by default (``positions="all"``) every step gets positions ``1..T``, where MulT drops the
  positional embedding of the steps it takes for padding. ``positions="skip_padding"`` does what
  MulT does there (see :class:`TransformerEncoder`).

The layers, one concept a module: :mod:`.attention` (``MultiheadAttention``), :mod:`.blockwise`
(the CPU dropout-attention path), :mod:`.dropout`, :mod:`.masks`, :mod:`.positional`,
:mod:`.pointwise` (``PointwiseConv1d``) and :mod:`.transformer` (the encoder and its layer). Every
name below is importable from ``backbones.layers``.
"""

from __future__ import annotations

from .attention import MultiheadAttention
from .blockwise import blockwise_attention, dropout_attention
from .dropout import dropout, dropout_add
from .masks import combine_masks, future_mask
from .pointwise import PointwiseConv1d
from .positional import POSITION_MODES, PositionMode, SinusoidalPositions, check_position_mode, sinusoidal_table
from .transformer import TransformerEncoder, TransformerEncoderLayer

__all__ = [
    "MultiheadAttention",
    "blockwise_attention",
    "PointwiseConv1d",
    "dropout",
    "dropout_add",
    "dropout_attention",
    "SinusoidalPositions",
    "TransformerEncoder",
    "TransformerEncoderLayer",
    "combine_masks",
    "future_mask",
    "sinusoidal_table",
    "POSITION_MODES",
    "PositionMode",
    "check_position_mode",
]
