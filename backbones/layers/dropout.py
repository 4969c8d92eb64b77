"""Dropout that draws only the dropped positions on a CPU (same distribution as ``F.dropout``)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["dropout", "dropout_add"]


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
