"""Blockwise (flash-style) softmax attention with dropout, for CPU training.

PyTorch's fused CPU attention kernel has no dropout, and its fallback materialises every
``(B, H, T_q, T_k)`` score tensor several times over; :func:`dropout_attention` holds one block of
scores at a time and recomputes the blocks in the backward pass.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch

from .dropout import _dropped

__all__ = ["blockwise_attention", "dropout_attention"]

_BLOCK_SCORES = 1 << 21  # scores per block: 8 MiB of fp32, small enough to stay in cache
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
