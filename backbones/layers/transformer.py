"""MulT's transformer encoder: pre-LayerNorm layers over scaled inputs plus sinusoidal positions."""

from __future__ import annotations

import math
import operator

import torch
import torch.nn.functional as F
from torch import nn

from ._helpers import _check_p, _xavier_linear
from .attention import MultiheadAttention
from .dropout import dropout, dropout_add
from .masks import combine_masks, future_mask
from .positional import PositionMode, SinusoidalPositions, check_position_mode

__all__ = ["TransformerEncoderLayer", "TransformerEncoder"]


def _check_prefix_len(prefix_len, length: int) -> int:
    """``prefix_len`` as an int if it lies in ``[0, length]``, else a ValueError."""
    try:
        n = operator.index(prefix_len) if not isinstance(prefix_len, bool) else None
    except TypeError:
        n = None
    if n is None or not 0 <= n <= length:
        raise ValueError(f"prefix_len must be an int in [0, T_q] = [0, {length}], got {prefix_len!r}")
    return n


class TransformerEncoderLayer(nn.Module):
    """Pre-LayerNorm encoder layer: ``x + drop(attn(LN(x)))``, then ``x + drop(FFN(LN(x)))``.

    In cross-attention the key/value input goes through the same first LayerNorm, as in MulT.
    The FFN is ``Linear(E, 4E) → ReLU → dropout → Linear(4E, E)``.

    Args:
        embed_dim: width E.
        num_heads: attention heads.
        attn_dropout: dropout on attention weights.
        relu_dropout: dropout after the FFN's ReLU.
        res_dropout: dropout on each branch before its residual add.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        attn_dropout: float = 0.1,
        relu_dropout: float = 0.1,
        res_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.attn = MultiheadAttention(embed_dim, num_heads, attn_dropout)
        self.norm_attn = nn.LayerNorm(embed_dim)
        self.norm_ffn = nn.LayerNorm(embed_dim)
        self.fc1 = _xavier_linear(embed_dim, 4 * embed_dim)
        self.fc2 = _xavier_linear(4 * embed_dim, embed_dim)
        self.relu_dropout = _check_p("relu_dropout", relu_dropout)
        self.res_dropout = _check_p("res_dropout", res_dropout)

    def forward(
        self,
        x: torch.Tensor,
        x_k: torch.Tensor | None = None,
        x_v: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
    ) -> torch.Tensor:
        """``x``: ``(B, T_q, E)``; ``x_k``/``x_v``: ``(B, T_k, E)`` or None → ``(B, T_q, E)``.

        ``attn_mask``: bool, True = blocked, broadcastable to ``(B, H, T_q, T_k)``;
        ``is_causal``: see :class:`MultiheadAttention`.
        """
        h = self.norm_attn(x)
        if x_k is None:
            h = self.attn(h, attn_mask=attn_mask, is_causal=is_causal)
        else:
            k = self.norm_attn(x_k)
            v = None if x_v is None or x_v is x_k else self.norm_attn(x_v)
            h = self.attn(h, k, v, attn_mask=attn_mask, is_causal=is_causal)
        x = dropout_add(x, h, self.res_dropout, self.training)
        h = dropout(F.relu(self.fc1(self.norm_ffn(x))), self.relu_dropout, self.training)
        return dropout_add(x, self.fc2(h), self.res_dropout, self.training)


class TransformerEncoder(nn.Module):
    """MulT's transformer: scaled input + sinusoidal positions, pre-LN layers, final LayerNorm.

    Self-attention when ``x_k`` is None; crossmodal otherwise, with queries from ``x_q`` and
    keys/values from ``x_k`` (and ``x_v``, default ``x_k``). Each input is embedded as
    ``sqrt(E) * x + pos`` followed by embedding dropout.

    Positions (``positions``), applied alike to queries, keys and values, each numbered on its
    own sequence:

    - ``"all"`` (default): every step ``t`` (0-based) gets the embedding of position ``t + 1``.
    - ``"skip_padding"``: what the authors' released MulT does (fairseq's early ``make_positions``
      with ``padding_idx=0, left_pad=False``). A step is *padding* when its input vector is
      exactly all-zero; it gets no positional embedding (its embedded input stays exactly 0). A
      real step keeps the position of its own index, ``t + 1``, so a zero step does not move the
      steps after it. MulT tests only the first feature (``x[..., 0] == 0``); the whole vector is
      tested here, so a real step whose first feature happens to be 0 keeps its position.
    - ``"skip_padding_renumber"``: padding as above, but the real steps are numbered ``1..n`` in
      order (fairseq's later ``cumsum`` ``make_positions``), so the first real step gets position 1
      however much padding precedes it.

    Padding steps are still attended (no key padding mask is derived), as in MulT; pass
    ``key_padding_mask`` to hide them.

    Args:
        embed_dim: width E.
        num_heads: attention heads; must divide E.
        layers: number of encoder layers.
        attn_dropout, relu_dropout, res_dropout: see :class:`TransformerEncoderLayer`.
        embed_dropout: dropout on the embedded inputs.
        attn_mask: apply MulT's future mask (:func:`future_mask`).
        positions: ``"all"``, ``"skip_padding"`` or ``"skip_padding_renumber"``, see above.
        last_step_only: return only the last query step ``(B, 1, E)`` (all MulT's head reads of its
            memories): every layer but the last runs on all steps (they are the last layer's keys),
            the last layer only on the last query, a quarter of a 3-layer memory's work less. Such
            an encoder never returns prompt rows, so a prompter leaves its output untrimmed
            (``returns_prompt_rows`` is False).
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        layers: int,
        attn_dropout: float = 0.0,
        relu_dropout: float = 0.0,
        res_dropout: float = 0.0,
        embed_dropout: float = 0.0,
        attn_mask: bool = False,
        positions: PositionMode = "all",
        last_step_only: bool = False,
    ) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"layers must be at least 1, got {layers}")
        self.embed_dim = embed_dim
        self.embed_scale = math.sqrt(embed_dim)
        self.embed_dropout = _check_p("embed_dropout", embed_dropout)
        self.attn_mask = bool(attn_mask)
        self.position_mode = check_position_mode(positions)
        self.positions = SinusoidalPositions(embed_dim)
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(embed_dim, num_heads, attn_dropout, relu_dropout, res_dropout)
            for _ in range(layers)
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.last_step_only = bool(last_step_only)
        self.returns_prompt_rows = not self.last_step_only  # read by the prompter's type-token hooks

    def position_ids(self, x: torch.Tensor, prefix_len: int = 0) -> torch.Tensor:
        """The position of each step of ``x`` ``(B, T, E)``: long ``(B, T)``, 0 = no positional embedding.

        The first ``prefix_len`` steps are prompt tokens: position 0, and the rest are numbered
        as if they were absent. See the class docstring for the modes.
        """
        B, T = x.shape[0], x.shape[1]
        idx = torch.arange(1 - prefix_len, T + 1 - prefix_len, device=x.device).clamp_(min=0)
        if self.position_mode == "all":
            return idx.expand(B, T)
        real = x.abs().amax(dim=-1) != 0
        if prefix_len:
            real[:, :prefix_len] = False
        if self.position_mode == "skip_padding":
            return idx * real
        return real.cumsum(dim=1) * real

    def _embed(self, x: torch.Tensor, prefix_len: int = 0) -> torch.Tensor:
        T = x.shape[1]
        if self.position_mode == "all" and prefix_len == 0:
            pos = self.positions(T).to(x.dtype)
        elif self.position_mode == "all":  # the prompt tokens get none; the others keep 1..T - prefix_len
            pos = F.pad(self.positions(T - prefix_len), (0, 0, prefix_len, 0)).to(x.dtype)
        else:  # row 0 of the padded table is the "no position" embedding
            table = F.pad(self.positions(T - prefix_len), (0, 0, 1, 0)).to(x.dtype)
            pos = table[self.position_ids(x, prefix_len)]
        return dropout(torch.add(pos, x, alpha=self.embed_scale), self.embed_dropout, self.training)

    def _check(self, name: str, x: torch.Tensor, batch: int | None = None) -> None:
        if x.dim() != 3 or x.shape[-1] != self.embed_dim:
            raise ValueError(f"{name} must have shape (B, T, {self.embed_dim}), got {tuple(x.shape)}")
        if batch is not None and x.shape[0] != batch:
            raise ValueError(f"{name} has batch size {x.shape[0]} but x_q has {batch}")

    def forward(
        self,
        x_q: torch.Tensor,
        x_k: torch.Tensor | None = None,
        x_v: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
        prefix_len: int = 0,
    ) -> torch.Tensor:
        """Encode ``x_q`` ``(B, T_q, E)``, attending to itself or to ``x_k`` ``(B, T_k, E)``.

        Args:
            x_q: queries (and keys/values in self-attention).
            x_k: crossmodal keys/values, or None.
            x_v: crossmodal values when they differ from ``x_k``.
            key_padding_mask: bool ``(B, T_k)``, True at padded keys (``T_k = T_q`` in
                self-attention). Every sample needs at least one visible key.
            prefix_len: the first ``prefix_len`` steps of ``x_q`` are prompt tokens: they get no
                positional embedding and the other steps are numbered as if they were absent
                (in every ``positions`` mode). Attention and masks treat them as ordinary steps;
                with the future mask on, every later step sees them. ``x_k``/``x_v`` have no prefix.

        Returns:
            ``(B, T_q, E)``; ``(B, 1, E)`` with ``last_step_only``.
        """
        self._check("x_q", x_q)
        prefix_len = _check_prefix_len(prefix_len, x_q.shape[1])
        if x_k is None and x_v is not None:
            raise ValueError("x_v given without x_k; pass x_k (and x_v) for crossmodal attention")
        kv = x_q if x_k is None else x_k
        if x_k is not None:
            self._check("x_k", x_k, x_q.shape[0])
        if x_v is not None and x_v is not x_k:
            self._check("x_v", x_v, x_q.shape[0])
            if x_v.shape[1] != x_k.shape[1]:
                raise ValueError(f"x_v has {x_v.shape[1]} steps but x_k has {x_k.shape[1]}")

        t_q, t_k = x_q.shape[1], kv.shape[1]
        # With equal lengths the future mask is the causal one: let SDPA pick its causal kernel.
        causal = self.attn_mask and t_q == t_k and key_padding_mask is None
        # the future mask blocks nothing when every query sees the last key (T_k << T_q): drop it
        future = self.attn_mask and not causal and t_k - 1 > abs(t_k - t_q)
        blocked = future_mask(t_q, t_k, x_q.device) if future else None
        blocked = combine_masks(blocked, key_padding_mask, batch=x_q.shape[0], t_k=t_k)
        if key_padding_mask is not None and blocked.all(dim=-1).any():
            raise ValueError(
                "key_padding_mask (with the future mask, if on) leaves some query with no visible key; "
                "every sample needs at least one unpadded key"
            )

        x = self._embed(x_q, prefix_len)
        k = v = None
        if x_k is not None:
            k = self._embed(x_k)
            v = k if x_v is None or x_v is x_k else self._embed(x_v)
        last = len(self.layers) - 1 if self.last_step_only else len(self.layers)
        for layer in self.layers[:last]:
            x = layer(x, k, v, attn_mask=blocked, is_causal=causal)
        if self.last_step_only:  # the last query sees every key: of the masks only key padding is left
            pad = None if key_padding_mask is None else key_padding_mask[:, None, None, :]
            x = self.layers[last](x[:, -1:], x if k is None else k, v, attn_mask=pad)
        return self.norm(x)
