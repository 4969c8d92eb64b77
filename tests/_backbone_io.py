"""Shared helpers of the backbone test files: MOSI-shaped inputs and the shapes at hook points."""

from __future__ import annotations

import torch

from promptkit.hookspec import resolve_module

DIMS = {"text": 300, "audio": 5, "vision": 20}


def inputs(lengths=(50, 50, 50), batch: int = 3, dims=DIMS, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random features ``(batch, T_m, D_m)`` per modality, lengths in ``dims`` order."""
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(batch, t, d, generator=g) for (m, d), t in zip(dims.items(), lengths)}


def record_shapes(model, spec, x) -> dict[str, tuple]:
    """One forward; the output shape of each signal target, the input shape (``in:<path>``) of each type target."""
    seen: dict[str, tuple] = {}

    def out_hook(path):
        return lambda mod, args, out: seen.__setitem__(path, tuple(out.shape))

    def in_hook(path):
        return lambda mod, args: seen.__setitem__("in:" + path, tuple(args[0].shape))

    handles = [resolve_module(model, t.path).register_forward_hook(out_hook(t.path)) for t in spec.signal.values()]
    handles += [resolve_module(model, t.path).register_forward_pre_hook(in_hook(t.path)) for t in spec.type]
    try:
        model(**x)
    finally:
        for h in handles:
            h.remove()
    return seen
