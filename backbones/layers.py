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
"""

from __future__ import annotations

import contextlib
import math
import operator
from typing import Iterator, Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

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
    "future_mask",
    "sinusoidal_table",
    "POSITION_MODES",
    "PositionMode",
    "check_position_mode",
]

# How TransformerEncoder numbers its input steps; see its docstring.
POSITION_MODES = ("all", "skip_padding", "skip_padding_renumber")
PositionMode = Literal["all", "skip_padding", "skip_padding_renumber"]


def check_position_mode(positions: str) -> str:
    """``positions`` if it is one of :data:`POSITION_MODES`, else a ValueError naming them."""
    if positions not in POSITION_MODES:
        raise ValueError(f"positions must be one of {', '.join(map(repr, POSITION_MODES))}, got {positions!r}")
    return positions


def _check_p(name: str, p: float) -> float:
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {p}")
    return p


def _check_prefix_len(prefix_len, length: int) -> int:
    """``prefix_len`` as an int if it lies in ``[0, length]``, else a ValueError."""
    try:
        n = operator.index(prefix_len) if not isinstance(prefix_len, bool) else None
    except TypeError:
        n = None
    if n is None or not 0 <= n <= length:
        raise ValueError(f"prefix_len must be an int in [0, T_q] = [0, {length}], got {prefix_len!r}")
    return n


def _xavier_linear(in_features: int, out_features: int) -> nn.Linear:
    """A Linear with Xavier-uniform weight and zero bias, MulT's initialisation."""
    layer = nn.Linear(in_features, out_features)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


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
        if _BLOCKWISE and 0.0 < p < 1.0 and q.device.type == "cpu" and not torch.compiler.is_compiling():
            if is_causal:
                blocked = future_mask(q.shape[2], k.shape[2], q.device)
            out = dropout_attention(q, k, v, p, blocked)
        else:
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=None if blocked is None else ~blocked, dropout_p=p, is_causal=is_causal
            )
        return self.out_proj(rearrange(out, "b h t d -> b t (h d)"))


# --- dropout ---------------------------------------------------------------------------------------


def _sparse_dropout_ok(x: torch.Tensor, p: float, training: bool) -> bool:
    return training and 0.0 < p < 1.0 and x.device.type == "cpu" and not torch.compiler.is_compiling()


def _keep_scale(x: torch.Tensor, p: float) -> torch.Tensor:
    """A tensor like ``x``: 0 where dropped (each element i.i.d. with probability ``p``), ``1/(1-p)``
    elsewhere. Only the dropped positions are drawn (see :func:`_dropped`); PyTorch's CPU
    ``bernoulli_`` draws one number per element, serially on non-Intel CPUs."""
    scale = torch.full(x.shape, 1.0 / (1.0 - p), dtype=x.dtype, device=x.device)
    scale.view(-1)[_dropped(scale.numel(), p, None)] = 0.0
    return scale


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``F.dropout(x, p, training)``; on a CPU only the dropped positions are drawn."""
    if not _sparse_dropout_ok(x, p, training):
        return F.dropout(x, p, training)
    return x * _keep_scale(x, p)


def dropout_add(residual: torch.Tensor, x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``residual + F.dropout(x, p, training)``, as one fused ``addcmul`` on a CPU."""
    if not _sparse_dropout_ok(x, p, training):
        return residual + F.dropout(x, p, training)
    return torch.addcmul(residual, x, _keep_scale(x, p))


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


# --- blockwise attention with dropout (CPU training) ---------------------------------------------

_BLOCK_SCORES = 1 << 21
_BLOCKWISE = True  # see blockwise_attention()


@contextlib.contextmanager
def blockwise_attention(enabled: bool) -> Iterator[None]:
    """Within the block, CPU training with attention dropout uses :func:`dropout_attention`
    (``enabled=True``, the default) or PyTorch's SDPA (``False``: the reference path, e.g. to
    count the model's nominal FLOPs, which a kernel that skips blocked keys does not execute)."""
    global _BLOCKWISE
    previous, _BLOCKWISE = _BLOCKWISE, bool(enabled)
    try:
        yield
    finally:
        _BLOCKWISE = previous
  # scores per block: 8 MiB of fp32, small enough to stay in cache


def dropout_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, p: float, blocked: torch.Tensor | None = None
) -> torch.Tensor:
    """Softmax attention with dropout ``p`` on the attention weights, computed block by block.

    The same function as ``scaled_dot_product_attention(q, k, v, ~blocked, dropout_p=p)``: each
    weight is kept with probability ``1 - p`` and the kept ones are scaled by ``1 / (1 - p)``.
    Only one block of scores exists at a time; the backward pass recomputes the blocks and
    regenerates the same dropout pattern from a seed drawn from torch's global generator (so
    ``torch.manual_seed`` makes it reproducible). Keys that every query of a block has blocked
    (the future mask's upper triangle) are skipped.

    Args:
        q: ``(B, H, T_q, d)``; k: ``(B, H, T_k, d)``; v: ``(B, H, T_k, d_v)``.
        p: dropout probability, ``0 < p < 1``.
        blocked: bool, True where attention is blocked, broadcastable to ``(B, H, T_q, T_k)``;
            every query needs at least one visible key.

    Returns:
        ``(B, H, T_q, d_v)``, stored time-major (``(B, T_q, H, d_v)`` in memory) so that merging the
        heads afterwards is a view.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"dropout_attention needs 0 < p < 1, got {p}")
    if blocked is not None and blocked.dtype != torch.bool:
        raise TypeError(f"blocked must be a bool mask (True = blocked), got {blocked.dtype}")
    seed = int(torch.randint(0, 2**62, ()).item())
    return _DropoutAttention.apply(q, k, v, blocked, float(p), seed)


def _blocks(B: int, H: int, t_q: int, t_k: int, blocked: torch.Tensor | None):
    """The block grid: ``(b0, b1, i0, i1, k_end, mask)``; identical in the forward and the backward.

    A block holds samples ``b0:b1`` (all heads), queries ``i0:i1`` and keys ``0:k_end``, where
    ``k_end`` is one past the last key any of those queries may see; ``mask`` is the block's
    slice of ``blocked``, broadcastable to ``(b1 - b0, H, rows, k_end)``, or None when it blocks
    nothing there.
    """
    rows = min(t_q, 128)
    samples = max(1, min(B, _BLOCK_SCORES // (H * rows * t_k)))
    if blocked is not None:
        blocked = blocked.reshape((1,) * (4 - blocked.dim()) + tuple(blocked.shape))  # (b|1, H|1, T_q|1, T_k)
        per_batch, per_query = blocked.shape[0] > 1, blocked.shape[2] > 1
        any_blocked = blocked.any(0).any(0).expand(t_q, t_k)
        # one past the last key each query may see (at least 1: a block never has zero keys)
        idx = torch.arange(1, t_k + 1, device=blocked.device)
        last_visible = (~blocked).mul(idx).amax(dim=(0, 1, 3)).expand(t_q).clamp(min=1).tolist()
    for i0 in range(0, t_q, rows):
        i1 = min(t_q, i0 + rows)
        k_end = t_k if blocked is None else max(last_visible[i0:i1])
        hit = blocked is not None and bool(any_blocked[i0:i1, :k_end].any())
        for b0 in range(0, B, samples):
            b1 = min(B, b0 + samples)
            mask = None
            if hit:
                batch = slice(b0, b1) if per_batch else slice(None)
                mask = blocked[batch, :, slice(i0, i1) if per_query else slice(None), :k_end]
            yield b0, b1, i0, i1, k_end, mask


def _masked_scores(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None, heads: int) -> torch.Tensor:
    """``q @ k^T`` for one block ``(n, rows, d) x (n, k_end, d) -> (n, rows, k_end)``, blocked = -inf.

    ``mask`` broadcasts to ``(n // heads, heads, rows, k_end)``.
    """
    s = torch.bmm(q, k.transpose(1, 2))
    if mask is not None:
        s.view(-1, heads, *s.shape[1:]).masked_fill_(mask, float("-inf"))
    return s


def _dropped(n: int, p: float, gen: torch.Generator | None) -> torch.Tensor:
    """Flat indices in ``[0, n)`` where a Bernoulli(p) process succeeds (the dropped elements).

    Drawn as the gaps between successes, geometric by inversion, ``floor(log U / log(1 - p)) + 1``
    with ``U`` uniform on ``(0, 1]``: about ``p·n`` random draws instead of ``n``. ``U`` has
    float32's 24-bit resolution, the same as ``bernoulli_``'s uniforms, so a gap is cut short
    with probability at most ``2**-24``. ``gen`` None draws from torch's global generator.
    """
    if n == 0:
        return torch.empty(0, dtype=torch.long)
    count = int(n * p + 6.0 * math.sqrt(n * p * (1.0 - p))) + 16
    scale = 1.0 / math.log1p(-p)

    def gaps() -> torch.Tensor:
        u = torch.rand(count, generator=gen)
        return torch.log1p(u.neg_()).mul_(scale).long().add_(1)  # 1 - u lies in (0, 1]

    ends = gaps().cumsum_(0)
    while int(ends[-1]) <= n:  # ran short (about 1e-9 likely): draw on
        ends = torch.cat([ends, gaps().cumsum_(0).add_(ends[-1])])
    used = int(torch.searchsorted(ends, torch.tensor(n), right=True))
    return ends[:used].sub_(1)


class _DropoutAttention(torch.autograd.Function):
    """Blockwise attention with dropout; see :func:`dropout_attention`."""

    @staticmethod
    def forward(ctx, q, k, v, blocked, p, seed):  # type: ignore[override]
        B, H, t_q, d = q.shape
        t_k, dv = k.shape[2], v.shape[-1]
        qs = torch.empty(B, H, t_q, d, dtype=q.dtype, device=q.device)
        torch.mul(q, 1.0 / math.sqrt(d), out=qs)  # scores come out of the GEMM already scaled
        vs = torch.empty(B, H, t_k, dv, dtype=v.dtype, device=v.device)
        torch.mul(v, 1.0 / (1.0 - p), out=vs)  # kept weights' 1/(1-p) folded into v
        k = k.contiguous()
        out = torch.empty(B, t_q, H, dv, dtype=q.dtype, device=q.device)  # time-major, see docstring
        gen = torch.Generator(device=q.device).manual_seed(seed)
        for b0, b1, i0, i1, k_end, mask in _blocks(B, H, t_q, t_k, blocked):
            n = (b1 - b0) * H
            qb = qs[b0:b1, :, i0:i1].reshape(n, i1 - i0, d)
            w = torch.softmax(_masked_scores(qb, k[b0:b1, :, :k_end].reshape(n, k_end, d), mask, H), dim=-1)
            w.view(-1)[_dropped(w.numel(), p, gen)] = 0.0
            o = torch.bmm(w, vs[b0:b1, :, :k_end].reshape(n, k_end, dv))
            out[b0:b1, i0:i1] = o.view(b1 - b0, H, i1 - i0, dv).transpose(1, 2)
        out = out.transpose(1, 2)  # (B, H, T_q, d) view
        ctx.save_for_backward(qs, k, vs, out, blocked)
        ctx.p, ctx.seed = p, seed
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        qs, k, vs, out, blocked = ctx.saved_tensors
        p = ctx.p
        B, H, t_q, d = qs.shape
        t_k, dv = k.shape[2], vs.shape[-1]
        delta = (grad_out * out).sum(-1, keepdim=True)  # (B, H, T_q, 1): rowsum(dO * O)
        dqs = torch.empty_like(qs)
        dk = torch.zeros_like(k)
        dvs = torch.zeros_like(vs)
        gen = torch.Generator(device=qs.device).manual_seed(ctx.seed)
        for b0, b1, i0, i1, k_end, mask in _blocks(B, H, t_q, t_k, blocked):
            n = (b1 - b0) * H
            qb = qs[b0:b1, :, i0:i1].reshape(n, i1 - i0, d)
            kb = k[b0:b1, :, :k_end].reshape(n, k_end, d)
            vb = vs[b0:b1, :, :k_end].reshape(n, k_end, dv)
            gb = grad_out[b0:b1, :, i0:i1].reshape(n, i1 - i0, dv)
            w = torch.softmax(_masked_scores(qb, kb, mask, H), dim=-1)
            dropped = _dropped(w.numel(), p, gen)
            dw = torch.bmm(gb, vb.transpose(1, 2))
            dw.view(-1)[dropped] = 0.0
            ds = dw.sub_(delta[b0:b1, :, i0:i1].reshape(n, i1 - i0, 1)).mul_(w)  # softmax backward
            w.view(-1)[dropped] = 0.0
            dvs[b0:b1, :, :k_end] += torch.bmm(w.transpose(1, 2), gb).view(b1 - b0, H, k_end, dv)
            dk[b0:b1, :, :k_end] += torch.bmm(ds.transpose(1, 2), qb).view(b1 - b0, H, k_end, d)
            dqs[b0:b1, :, i0:i1] = torch.bmm(ds, kb).view(b1 - b0, H, i1 - i0, d)
        dq = dqs.mul_(1.0 / math.sqrt(d))  # dk needs no factor: it was taken against the scaled q
        return dq, dk, dvs.mul_(1.0 / (1.0 - p)), None, None, None


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


def sinusoidal_table(length: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """Sinusoidal embeddings of positions ``1..length`` (MulT/fairseq form), ``(length, dim)``.

    Row ``t`` holds ``[sin((t+1) w), cos((t+1) w)]`` with ``w_i = 10000^(-i / (dim/2 - 1))``; an odd
    ``dim`` gets a zero last column.
    """
    half = dim // 2
    rate = math.log(10000.0) / max(half - 1, 1)
    freqs = torch.exp(torch.arange(half, dtype=torch.float32, device=device) * -rate)
    angles = torch.arange(1, length + 1, dtype=torch.float32, device=device)[:, None] * freqs[None, :]
    table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if dim % 2:
        table = F.pad(table, (0, 1))
    return table


class SinusoidalPositions(nn.Module):
    """Cached sinusoidal positional embeddings; ``forward(T)`` gives ``(T, D)``.

    The table is a non-persistent buffer (it follows ``.to()`` and is not saved) and grows to the
    next power of two when a longer sequence arrives.
    """

    def __init__(self, dim: int, init_size: int = 128) -> None:
        super().__init__()
        self.dim = dim
        self.register_buffer("table", sinusoidal_table(init_size, dim), persistent=False)

    def forward(self, length: int) -> torch.Tensor:
        if length > self.table.shape[0]:
            size = 1 << (length - 1).bit_length()
            self.table = sinusoidal_table(size, self.dim, device=self.table.device).to(self.table.dtype)
        return self.table[:length]


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
            ``(B, T_q, E)``.
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
        for layer in self.layers:
            x = layer(x, k, v, attn_mask=blocked, is_causal=causal)
        return self.norm(x)
