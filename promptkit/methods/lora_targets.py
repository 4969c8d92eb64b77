"""Which layers of a backbone LoRA adapts (:func:`lora_target_modules`), and the path rules it uses.

Every ``nn.Linear`` and every ``nn.Conv1d`` peft can wrap, in ``named_modules`` order, except those
inside the spec's trainable modules (the head) and those whose own ``forward`` never runs in a
forward pass. MulT's input projections are ``PointwiseConv1d`` s, whose constructor peft cannot
call for the low-rank pair, so they stay without LoRA. The last rule matters for MulT: its
cross-attention reads the fused q/k/v projection's weight slices directly
(``F.linear(query, in_proj.weight[:E], ...)``), so a LoRA there would never reach the output; the
self-attention of the memory transformers calls ``in_proj`` and keeps it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..hookspec import HookSpec, hook_spec_for

LORA_PARTS = ("lora_A", "lora_B")
"""The two low-rank modules peft adds to an adapted layer."""
TARGET_TYPES = (nn.Linear, nn.Conv1d)
"""The layer types LoRA adapts."""


def spec_of(backbone: nn.Module, hooks: Any = None) -> Any:
    """``hooks`` as a HookSpec (a dict is read), else the spec registered for ``backbone``."""

    if hooks is None:
        return hook_spec_for(backbone)
    return hooks if isinstance(hooks, HookSpec) else HookSpec.from_dict(dict(hooks))


def is_lora_path(path: str) -> bool:
    """Whether module ``path`` is a layer's ``lora_A``/``lora_B`` (not the head)."""
    return path.rsplit(".", 1)[-1] in LORA_PARTS


def head_paths(spec: Any) -> list[str]:
    """The spec's trainable modules but the LoRA ones: the head, which trains fully."""
    return [p for p in spec.trainable if not is_lora_path(p)]


def inside(name: str, paths: Sequence[str]) -> bool:
    """Whether ``name`` is one of ``paths`` or below one (``""`` is the whole model)."""
    return any(p == "" or name == p or name.startswith(p + ".") for p in paths)


def module_device(module: nn.Module) -> torch.device:
    """The device of ``module``'s first parameter (CPU for a module without any)."""
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def has_lora(backbone: nn.Module) -> bool:
    """Whether ``backbone`` already holds peft LoRA layers."""
    from peft.tuners.lora import LoraLayer

    return any(isinstance(m, LoraLayer) for m in backbone.modules())


def _example_inputs(backbone: nn.Module, spec: Any, steps: int = 4, batch: int = 2) -> dict[str, torch.Tensor] | None:
    dims = getattr(backbone, "feature_dims", None)
    if not dims or any(m not in dims for m in spec.modalities):
        return None
    weight = next(backbone.parameters(), None)
    dtype = weight.dtype if weight is not None else torch.float32
    device = weight.device if weight is not None else torch.device("cpu")
    gen = torch.Generator().manual_seed(0)
    tokens = getattr(backbone, "token_modalities", ())  # token ids (B, 3, T) below the vocabulary size
    return {m: _example_tokens(batch, steps, int(dims[m]), gen).to(device) if m in tokens else
            torch.randn(batch, steps, int(dims[m]), generator=gen).to(device=device, dtype=dtype)
            for m in spec.modalities}


def _example_tokens(batch: int, steps: int, vocab: int, gen: torch.Generator) -> torch.Tensor:
    """Random token rows ``(B, 3, T)``: ids in ``[1, vocab)``, every step a real token, segment 0."""
    ids = torch.randint(1, vocab, (batch, steps), generator=gen)
    return torch.stack([ids, torch.ones_like(ids), torch.zeros_like(ids)], dim=1)


def _called_modules(
    backbone: nn.Module, spec: Any, names: Sequence[str], example: Mapping[str, torch.Tensor]
) -> set[str]:
    """The names among ``names`` whose ``forward`` runs in one eval forward on ``example``."""
    called: set[str] = set()
    modules = dict(backbone.named_modules())
    handles = [modules[n].register_forward_hook(lambda mod, args, out, n=n: called.add(n)) for n in names]
    was_training = backbone.training
    dev = module_device(backbone)
    devices = [dev.index or 0] if dev.type == "cuda" else []
    try:
        backbone.eval()
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            backbone(**spec.kwargs(dict(example)))
    except Exception as e:
        raise RuntimeError(
            f"lora_target_modules could not run {type(backbone).__name__} on example inputs "
            f"{ {m: tuple(x.shape) for m, x in example.items()} } to find the layers whose forward runs ({e}); "
            "pass example= features that it accepts, or probe=False"
        ) from e
    finally:
        for h in handles:
            h.remove()
        backbone.train(was_training)
    return called


def peft_can_adapt(module: nn.Module) -> bool:
    """Whether peft's LoRA can wrap ``module``: any ``nn.Linear``; an ``nn.Conv1d`` whose class peft can
    rebuild for the low-rank pair (peft constructs ``type(module)(in, r, kernel_size, stride, padding,
    bias=False)``, which a subclass with another constructor, e.g. MulT's ``PointwiseConv1d``, refuses)."""
    if isinstance(module, nn.Linear):
        return True
    if not isinstance(module, nn.Conv1d):
        return False
    if type(module) is nn.Conv1d:
        return True
    try:
        type(module)(module.in_channels, 1, module.kernel_size, module.stride, module.padding, bias=False)
    except (TypeError, ValueError):
        return False
    return True


def lora_target_modules(
    backbone: nn.Module,
    hooks: Any = None,
    *,
    probe: bool = True,
    example: Mapping[str, torch.Tensor] | None = None,
) -> list[str]:
    """The module names LoRA adapts in ``backbone``, in ``named_modules`` order.

    Rule: every ``nn.Linear`` and every ``nn.Conv1d`` peft can wrap (:func:`peft_can_adapt`; MulT's
    ``PointwiseConv1d`` input projections it cannot), except the ones inside the spec's
    ``trainable`` modules (the head, which trains fully) and, with ``probe``, the ones whose
    ``forward`` does not run in one eval forward of the backbone (a layer whose weight the model
    reads directly would carry a LoRA that never reaches the output).

    Args:
        hooks: a HookSpec (or dict) for a backbone without a registered one.
        probe: drop the layers whose forward never runs (needs one forward; see ``example``).
        example: features ``{modality: (B, T, D)}`` for the probe; by default 2 samples of 4
            random steps, sized by ``backbone.feature_dims``.

    Raises:
        ValueError: ``backbone`` already holds LoRA layers, or no layer qualifies.
        RuntimeError: the probe's forward failed (pass ``example`` or ``probe=False``).
    """
    if has_lora(backbone):
        raise ValueError(f"this {type(backbone).__name__} already holds LoRA layers; select targets on a bare backbone")
    spec = spec_of(backbone, hooks)
    head = head_paths(spec)
    names = [n for n, m in backbone.named_modules()
             if n and isinstance(m, TARGET_TYPES) and not inside(n, head) and peft_can_adapt(m)]
    if probe and names:
        if example is None:
            example = _example_inputs(backbone, spec)
        if example is None:
            warnings.warn(
                f"{type(backbone).__name__} has no feature_dims to build probe inputs from; every Linear/Conv1d "
                "outside the head is adapted, whether its forward runs or not (pass example= to probe)",
                stacklevel=2,
            )
        else:
            called = _called_modules(backbone, spec, names, example)
            names = [n for n in names if n in called]
    if not names:
        raise ValueError(
            f"{type(backbone).__name__} has no nn.Linear/nn.Conv1d outside its trainable modules {head} "
            "whose forward runs: nothing for LoRA to adapt"
        )
    return names
