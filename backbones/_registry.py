"""The backbone registry, in timm's manner: one dict from name to constructor."""

from __future__ import annotations

import fnmatch
from typing import Callable

from torch import nn

_BACKBONES: dict[str, Callable[..., nn.Module]] = {}


def register_backbone(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register ``fn`` under its function name; it builds the backbone from keywords."""
    name = fn.__name__
    if name in _BACKBONES:
        raise ValueError(f"backbone {name!r} is already registered")
    _BACKBONES[name] = fn
    return fn


def list_backbones(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style wildcard, sorted."""
    return sorted(n for n in _BACKBONES if fnmatch.fnmatch(n, pattern))


def is_backbone(name: str) -> bool:
    return name in _BACKBONES


def create_backbone(name: str, **cfg) -> nn.Module:
    """Build the registered backbone ``name`` with keyword config ``cfg``."""
    if name not in _BACKBONES:
        raise KeyError(f"unknown backbone {name!r}; known backbones: {list_backbones()}")
    return _BACKBONES[name](**cfg)
