"""The pure functions of one CGGM step: modulation coefficients, direction loss, unimodal stats.

None of them holds state; :class:`~promptkit.cggm.plugin.CGGM` calls them once per training step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange


def modulation_coefficients(deltas: Sequence[float], eps: float, b_max: float) -> tuple[list[float], bool]:
    """B_m = (S − Δ_m) / S clipped to [0, b_max], S = Σ_j Δ_j; all 1 when |S| < eps (the guard).

    Args:
        deltas: Δ_m, each modality's change of classifier accuracy since the previous step.
        eps: the guard's threshold on |S| (a non-finite S also fires it).
        b_max: upper bound on B.

    Returns:
        (B per modality, whether the guard fired).
    """
    s = float(sum(deltas))
    if not math.isfinite(s) or abs(s) < eps:
        return [1.0] * len(deltas), True
    return [min(max(0.0, (s - d) / s), b_max) for d in deltas], False


def direction_loss(coefficients: Sequence[float], cosines: torch.Tensor) -> torch.Tensor:
    """L_gm = (Σ|B_m| − Σ B_m·cos_m) / M; B are constants, ``cosines`` is ``(M,)``."""
    b = torch.tensor(list(coefficients), dtype=cosines.dtype, device=cosines.device)
    if b.shape != cosines.shape:
        raise ValueError(f"{len(b)} coefficients for {tuple(cosines.shape)} cosines")
    return (b.abs().sum() - (b * cosines).sum()) / len(b)


def unimodal_stats(
    logits: torch.Tensor, labels: torch.Tensor, task: str, keep: torch.Tensor | None = None
) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """Task loss and hit counts of one classifier on one batch.

    Args:
        logits: ``(B, P)``.
        labels: regression ``(B,)``/``(B, P)`` float; classification ``(B,)`` class ids with
            ``P`` classes, or ``(B, K)`` with ``P = K·C`` (K tasks of C classes, logits grouped by task).
        task: ``"regression"`` (L1; sign accuracy on non-zero labels) or ``"classification"`` (CE).
        keep: ``(B,)`` bool, the samples to use (None: all).

    Returns:
        (mean loss over kept rows or None when none is kept, hits, counted) — the last two 0-dim float.
    """
    b = logits.shape[0]
    if logits.dim() != 2 or labels.shape[0] != b:
        raise ValueError(
            f"logits must be (B, P) and labels (B, ...) with the same B; "
            f"got {tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    if task == "classification":
        if labels.is_floating_point():
            raise TypeError(f"classification labels must be integer class ids, got dtype {labels.dtype}")
        k = labels[0].numel() if labels.dim() > 1 else 1
        if logits.shape[1] % k:
            raise ValueError(f"{k} label(s) per sample need logits (B, {k}·C), got {tuple(logits.shape)}")
        rows = rearrange(logits, "b (k c) -> (b k) c", k=k)
        y = labels.reshape(-1).long()
    elif task == "regression":
        k = logits.shape[1]
        if labels.numel() != b * k:
            raise ValueError(f"regression labels {tuple(labels.shape)} do not match predictions {tuple(logits.shape)}")
        rows, y = logits.reshape(-1), labels.reshape(-1).to(logits.dtype)
    else:
        raise ValueError(f"task must be 'regression' or 'classification', got {task!r}")
    kept = torch.ones(b * k, dtype=torch.bool, device=logits.device)
    if keep is not None:
        kept = keep.to(logits.device).bool().repeat_interleave(k)
    if task == "classification":
        loss = F.cross_entropy(rows[kept], y[kept]) if kept.any() else None
        hit, counted = rows.argmax(-1) == y, kept
    else:
        loss = F.l1_loss(rows[kept], y[kept]) if kept.any() else None
        hit, counted = (rows > 0) == (y > 0), kept & (y != 0)
    return loss, (hit & counted).sum().float(), counted.sum().float()


def read_out(x: Any, layout: str, path: str = "?") -> torch.Tensor:
    """An encoder's output as ``(B, D)``: the vector itself or the last step of a sequence.

    Tuple outputs (RNNs, attention blocks) are read from their first element.

    Args:
        x: the module output: ``(B, D)`` for layout ``"BD"``, else ``(B, T, D)`` / ``(B, D, T)`` / ``(T, B, D)``.
        layout: ``"BD"``, ``"BTD"``, ``"BDT"`` or ``"TBD"``.
        path: the module's path, for error messages.
    """
    if isinstance(x, (tuple, list)):
        x = x[0]
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"encoder output {path!r} is a {type(x).__name__}, expected a tensor")
    want = 2 if layout == "BD" else 3
    if x.dim() != want:
        raise ValueError(f"encoder output {path!r} has shape {tuple(x.shape)}; layout {layout!r} expects {want} dims")
    if layout == "BD":
        return x
    return {"BTD": x[:, -1], "BDT": x[:, :, -1], "TBD": x[-1]}[layout]
