"""The paper's baselines (and LoRA) as methods beside the prompts, on the same data and masks.

A method trains from a recipe, the data and a pre-trained backbone file, and returns a
:class:`TrainedMethod`: a forward ``(features, mask) -> (B, out_dim)`` that the evaluation protocol
(:func:`promptkit.evaluation.evaluate_protocol`) scores under the same fixed masks as every other
model, with its trainable-parameter count. Each method lives in its own module and registers itself
with :func:`register_method`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..evaluation.protocol import Forward


@dataclass
class TrainedMethod:
    """What a trained method gives the evaluation.

    Attributes:
        name: the method's registry name (``"ms_mean"``, ``"lb"``, ``"lora"``, ...).
        forward: ``(features {m: (B, T_m, D_m)}, mask (B, M) bool) -> (B, out_dim)``.
        trainable_params: parameters the method trained (0 for a substitution at test time).
        modules: the trained modules, by name (what a caller may save or inspect).
        info: anything else worth recording (best epochs, fill values' source, ...).
    """

    name: str
    forward: Forward
    trainable_params: int
    modules: dict[str, nn.Module] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


MethodFn = Callable[..., TrainedMethod]
_METHODS: dict[str, MethodFn] = {}


def register_method(name: str) -> Callable[[MethodFn], MethodFn]:
    """Decorator: ``@register_method("ms_mean")`` over ``fn(recipe, data, backbone_file, out_dir, *,
    hooks=None, **opts) -> TrainedMethod``."""

    def deco(fn: MethodFn) -> MethodFn:
        if name in _METHODS:
            raise KeyError(f"method {name!r} is registered twice")
        _METHODS[name] = fn
        return fn

    return deco


def get_method(name: str) -> MethodFn:
    """The registered method ``name``; an unknown name lists the known ones."""
    _load_builtin()
    if name not in _METHODS:
        raise KeyError(f"unknown method {name!r}; known methods: {sorted(_METHODS)}")
    return _METHODS[name]


def list_methods() -> list[str]:
    _load_builtin()
    return sorted(_METHODS)


def _load_builtin() -> None:
    """Import the shipped method modules (each registers itself)."""
    import importlib

    for module in _BUILTIN:
        importlib.import_module(f"{__name__}.{module}")


_BUILTIN: list[str] = ["substitution", "lower_bound", "lora", "mpmm", "mpmm_attention", "mmin_method", "mctn_method"]  # module names under promptkit.methods, added as they are written
