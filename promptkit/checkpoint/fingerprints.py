"""Identities of a model: its layout fingerprint (tensor names and shapes) and its weights digest.

Both are sha256 sums cut to 16 hex digits, recorded in files to refuse the wrong model by name:
:func:`fingerprint` for "another architecture or feature sizes", :func:`state_digest` for "other
pre-trained weights" (an adapter is bound to the frozen weights it was trained on).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn


def shapes_of(named: Mapping[str, Any] | nn.Module) -> dict[str, tuple[int, ...]]:
    """name -> shape of a state dict, a name -> shape mapping or a module's ``state_dict``."""
    if isinstance(named, nn.Module):
        named = named.state_dict()
    return {k: tuple(v.shape) if isinstance(v, torch.Tensor) else tuple(v) for k, v in named.items()}


def fingerprint(named: Mapping[str, torch.Tensor | Sequence[int]] | nn.Module) -> str:
    """sha256 (16 hex digits) of sorted tensor names and shapes: identifies a model layout."""
    shapes = shapes_of(named)
    blob = "\n".join(f"{k}:{list(s)}" for k, s in sorted(shapes.items())).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def weights_digest(model: nn.Module) -> str:
    """sha256 (16 hex digits) of every state tensor's name, dtype, shape and values: identifies the
    weights themselves (e.g. the pre-trained backbone a prompt stage adapts)."""
    return state_digest(model.state_dict())


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """:func:`weights_digest` of a state dict (e.g. a backbone's frozen part only)."""
    h = hashlib.sha256()
    for name, t in sorted(state.items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{list(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]
