"""CGGM's per-modality classifiers f_m: built seeded, moved with their Adam state, trained one step
on the captured representations, and kept identical across the processes of a distributed run.

Each f_m maps modality m's detached representation ``(B, D_m)`` to the task's outputs
``(B, out_dim)``; its output layer (``[-1]``) is the one whose weight L_gm compares with the head's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..hookspec import ModalityEncoder
from .coefficients import unimodal_stats

__all__ = [
    "build_classifiers",
    "check_width",
    "move_classifiers",
    "sync_classifiers",
    "train_classifiers",
    "unimodal_classifier",
]


def unimodal_classifier(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """f_m: ``(B, D_m) → (B, out_dim)``; ``[-1]`` is the output layer compared in L_gm."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


def build_classifiers(widths: Mapping[str, int], hidden: int, out_dim: int, seed: int) -> nn.ModuleDict:
    """One f_m per modality, in ``widths``' order, initialised from ``seed`` (the global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.ModuleDict({m: unimodal_classifier(w, hidden, out_dim) for m, w in widths.items()})


def move_classifiers(classifiers: nn.ModuleDict, optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Move the classifiers and their Adam state (``step`` stays on the CPU, as torch keeps it)."""
    if next(classifiers.parameters()).device == device:
        return
    classifiers.to(device)
    for state in optimizer.state.values():
        for k, v in state.items():
            if isinstance(v, torch.Tensor) and k != "step":
                state[k] = v.to(device)


def check_width(classifiers: nn.ModuleDict, m: str, x: torch.Tensor, encoder: ModalityEncoder) -> torch.Tensor:
    """``x`` ``(B, D_m)`` unchanged if f_m takes ``D_m`` features; else a ``ValueError`` naming the encoder."""
    want = classifiers[m][0].in_features
    if x.shape[-1] != want:
        raise ValueError(
            f"{m}'s encoder {encoder.output!r} gives width {x.shape[-1]}, expected {want}; "
            f"fix width= or layout= in its ModalityEncoder (layout {encoder.layout!r})"
        )
    return x


def sync_classifiers(classifiers: nn.ModuleDict, counts: torch.Tensor, accelerator: Any) -> None:
    """Sum hit counts and average the classifiers' gradients across processes (through the
    accelerator), so every process computes the same accuracies and the same B."""
    if accelerator is None or getattr(accelerator, "num_processes", 1) <= 1:
        return
    counts.copy_(accelerator.reduce(counts, reduction="sum"))
    for p in classifiers.parameters():
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        p.grad.copy_(accelerator.reduce(p.grad, reduction="mean"))


def train_classifiers(
    classifiers: nn.ModuleDict,
    optimizer: torch.optim.Optimizer,
    reps: Mapping[str, torch.Tensor],
    labels: torch.Tensor,
    task: str,
    mask: torch.Tensor | None,
    encoders: Mapping[str, ModalityEncoder],
    accelerator: Any = None,
) -> list[tuple[float, float]]:
    """One Adam step for every f_m on ``reps[m]`` ``(B, D_m)``, in the classifiers' order.

    ``mask`` ``(B, M)`` (columns in that order) limits f_m to the samples where m is present.
    Returns ``(hits, counted)`` per modality from the pre-update predictions (summed over processes).
    """
    modalities: Sequence[str] = list(classifiers.keys())
    device = next(iter(reps.values())).device
    move_classifiers(classifiers, optimizer, device)
    labels = labels.to(device)
    losses, counts = [], []
    classifiers.train()
    with torch.enable_grad(), torch.autocast(device_type=device.type, enabled=False):
        for i, m in enumerate(modalities):
            x = check_width(classifiers, m, reps[m], encoders[m]).float()
            keep = None if mask is None else mask[:, i]
            loss, hits, counted = unimodal_stats(classifiers[m](x), labels, task, keep)
            if loss is not None:
                losses.append(loss)
            counts.append(torch.stack([hits, counted]))
        counts_t = torch.stack(counts)  # (M, 2)
        optimizer.zero_grad(set_to_none=True)
        if losses:
            torch.stack(losses).sum().backward()
        sync_classifiers(classifiers, counts_t, accelerator)
        optimizer.step()
    return [(hits, counted) for hits, counted in counts_t.tolist()]
