"""Small checks and initialisers shared by the layers."""

from __future__ import annotations

from torch import nn


def _check_p(name: str, p: float) -> float:
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {p}")
    return p



def _xavier_linear(in_features: int, out_features: int) -> nn.Linear:
    """A Linear with Xavier-uniform weight and zero bias, MulT's initialisation."""
    layer = nn.Linear(in_features, out_features)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer
