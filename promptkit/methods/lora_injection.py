"""LoRA injected into a backbone in place (``peft.inject_adapter_in_model``), and what it added.

The base weights keep their values and are frozen; the LoRA tensors (``...lora_A.default.weight``,
``...lora_B.default.weight``) are trainable, and so is the spec's head. The settings used are kept
on the backbone (:func:`lora_config`) for the adapter files.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .lora_targets import (
    TARGET_TYPES,
    has_lora,
    head_paths,
    inside,
    lora_target_modules,
    module_device,
    spec_of,
)

ADAPTER_NAME = "default"
"""peft's name for the one adapter promptkit injects."""


def _exact(names: Sequence[str]) -> str:
    """A regex that peft full-matches against module names: exactly ``names``, no suffix matches."""
    return "(?:" + "|".join(re.escape(n) for n in names) + ")"


def lora_modules(backbone: nn.Module) -> list[str]:
    """The names of the peft LoRA layers in ``backbone``, in ``named_modules`` order."""
    from peft.tuners.lora import LoraLayer

    return [n for n, m in backbone.named_modules() if isinstance(m, LoraLayer)]


def lora_parameters(backbone: nn.Module) -> dict[str, nn.Parameter]:
    """The LoRA tensors (``...lora_A.default.weight``, ``...lora_B.default.weight``) by name."""
    return {n: p for n, p in backbone.named_parameters() if is_lora_key(n)}


def is_lora_key(key: str) -> bool:
    return any(part.startswith("lora_") for part in key.split("."))



def inject_lora(
    backbone: nn.Module,
    r: int = 8,
    alpha: int = 16,
    dropout: float = 0.0,
    target_modules: Sequence[str] | None = None,
    *,
    hooks: Any = None,
    seed: int = 0,
    train_head: bool = True,
) -> nn.Module:
    """Inject LoRA into ``backbone`` in place (``peft.inject_adapter_in_model``); returns it.

    The base weights keep their values and are frozen; the LoRA tensors are trainable, and with
    ``train_head`` so is the spec's trainable head. The random LoRA A matrices are drawn from
    ``seed`` inside :func:`torch.random.fork_rng` (the B matrices start at zero, so the output
    is the backbone's own until training moves them); the global RNG is left as it was.

    Args:
        r, alpha, dropout: LoRA's rank, scaling numerator (the update is ``alpha / r * B A x``) and
            dropout on its input.
        target_modules: exact module names; None: :func:`lora_target_modules`.
        hooks: a HookSpec (or dict) for a backbone without a registered one (its ``trainable`` is
            the head).

    Raises:
        ValueError: bad ``r``/``alpha``/``dropout``, a backbone that already holds LoRA, an unknown
            target name or one that is not an ``nn.Linear``/``nn.Conv1d``.
    """
    if int(r) != r or r < 1:
        raise ValueError(f"LoRA rank r must be a positive integer, got {r!r}")
    if not alpha > 0:
        raise ValueError(f"LoRA alpha must be positive, got {alpha!r}")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"LoRA dropout must lie in [0, 1), got {dropout!r}")
    if has_lora(backbone):
        raise ValueError(f"this {type(backbone).__name__} already holds LoRA layers; inject into a bare backbone")
    targets = list(lora_target_modules(backbone, hooks) if target_modules is None else target_modules)
    if not targets:
        raise ValueError("target_modules is empty: nothing for LoRA to adapt")
    modules = dict(backbone.named_modules())
    for name in targets:
        if name not in modules:
            raise ValueError(f"LoRA target {name!r} does not exist in {type(backbone).__name__}")
        if not isinstance(modules[name], TARGET_TYPES):
            raise ValueError(f"LoRA target {name!r} is a {type(modules[name]).__name__}, not an nn.Linear/nn.Conv1d")
    if len(set(targets)) != len(targets):
        raise ValueError(f"target_modules names a module twice: {targets}")
    head = head_paths(spec_of(backbone, hooks)) if train_head else []
    return inject_exact(backbone, r, alpha, float(dropout), targets, head, seed=seed)


def inject_exact(backbone: nn.Module, r: int, alpha: float, dropout: float, targets: list[str], head: Sequence[str],
                 *, seed: int) -> nn.Module:
    """peft's injection of exactly ``targets`` (seeded), then only LoRA and ``head`` trainable."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=int(r), lora_alpha=alpha, lora_dropout=float(dropout), target_modules=_exact(targets),
                        bias="none")
    dev = module_device(backbone)
    with torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else []):
        torch.manual_seed(int(seed) & ((1 << 63) - 1))
        inject_adapter_in_model(config, backbone, adapter_name=ADAPTER_NAME)
    injected = lora_modules(backbone)
    if sorted(injected) != sorted(targets):
        raise RuntimeError(f"peft adapted {injected}, not the requested {targets}")
    for name, p in backbone.named_parameters():
        p.requires_grad_(is_lora_key(name) or inside(name, head))
    backbone._promptkit_lora = {"r": int(r), "lora_alpha": alpha, "lora_dropout": float(dropout),
                                "target_modules": list(targets), "bias": "none"}
    return backbone


def lora_config(backbone: nn.Module) -> dict[str, Any]:
    """The LoRA settings :func:`inject_lora` used on ``backbone`` (JSON-ready)."""
    config = getattr(backbone, "_promptkit_lora", None)
    if config is None:
        raise ValueError(f"this {type(backbone).__name__} holds no LoRA injected by inject_lora")
    return dict(config)


def base_state_shapes(backbone: nn.Module) -> dict[str, tuple[int, ...]]:
    """The backbone's state layout as it was before LoRA: LoRA tensors dropped, ``base_layer`` removed."""
    return {re.sub(r"\.base_layer(?=\.|$)", "", k): tuple(v.shape)
            for k, v in backbone.state_dict().items() if not is_lora_key(k)}
