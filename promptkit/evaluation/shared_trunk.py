"""Models that differ from the bare backbone only in a retrained head, evaluated on one trunk pass.

The zero-filled baseline and the head-only control run the same frozen backbone on the same
zero-filled inputs; only the head (the spec's one trainable module) differs. :class:`HeadsOnTrunk`
runs the bare backbone once per batch, keeps the input its head receives, and applies every other
head to that input: the protocol's cost for such a control drops to that of its head.

A model shares the trunk only when :func:`retrained_head` finds it is such a control (every prompt
type off, the backbone frozen, one trainable module, every other backbone tensor equal to the
bare backbone's) and :meth:`HeadsOnTrunk.check` finds the shared forward equal to the model's own
on a batch; otherwise it is evaluated on its own, as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..hookspec import resolve_module
from .protocol import Forward

__all__ = ["HeadsOnTrunk", "retrained_head", "share_trunk"]


def retrained_head(bare: nn.Module, prompter: nn.Module) -> nn.Module | None:
    """The head ``prompter`` retrained on a copy of ``bare``, when that is all it changed; else None."""
    cfg, spec = getattr(prompter, "config", None), getattr(prompter, "spec", None)
    if cfg is None or spec is None or getattr(prompter, "trains_backbone", True):
        return None
    if cfg.generative or cfg.signal or cfg.type or len(spec.trainable) != 1:
        return None
    path = spec.trainable[0]
    backbone = prompter.backbone
    if not path or path not in dict(backbone.named_modules()) or type(backbone) is not type(bare):
        return None
    ours, theirs = backbone.state_dict(), bare.state_dict()
    if ours.keys() != theirs.keys():
        return None
    for key, value in ours.items():
        if not key.startswith(path + ".") and not torch.equal(value, theirs[key].to(value.device)):
            return None
    return resolve_module(backbone, path)


class HeadsOnTrunk:
    """``forward(features, mask) -> {name: (B, out_dim)}``: ``base`` (the bare backbone's forward,
    e.g. the zero-filled one) under ``base_name``, and the same pass with each of ``heads`` in place
    of the bare module at ``path``.

    Args:
        base: the forward that runs ``bare``.
        bare: the backbone ``base`` runs; its module at ``path`` is the head replaced.
        path: the head's module path (the spec's trainable module).
        heads: name → a head of the same kind, trained elsewhere.
        read_output: the backbone spec's output selector (the head's output is the model's).
    """

    def __init__(self, base: Forward, bare: nn.Module, path: str, base_name: str,
                 heads: Mapping[str, nn.Module], read_output: Any) -> None:
        self.base, self.base_name, self.heads = base, base_name, dict(heads)
        self.module = resolve_module(bare, path)
        self.read_output = read_output

    def __call__(self, features: dict[str, torch.Tensor], mask: torch.Tensor) -> dict[str, torch.Tensor]:
        seen: dict[str, Any] = {}

        def keep(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            seen["args"], seen["kwargs"] = args, kwargs

        handle = self.module.register_forward_hook(keep, with_kwargs=True)
        try:
            out = {self.base_name: self.base(features, mask)}
        finally:
            handle.remove()
        if "args" not in seen:
            raise RuntimeError(f"the head {type(self.module).__name__} did not run in the trunk's forward")
        for name, head in self.heads.items():
            out[name] = self.read_output(head(*seen["args"], **seen["kwargs"]))
        return out

    def check(self, forwards: Mapping[str, Forward], features: dict[str, torch.Tensor], mask: torch.Tensor) -> list[str]:
        """The heads whose shared prediction differs from their own model's ``forwards[name]`` on this
        batch (beyond float tolerance); they are dropped from this group."""
        shared = self(features, mask)
        wrong = [name for name in self.heads
                 if not torch.allclose(shared[name], forwards[name](features, mask), rtol=1e-5, atol=1e-6)]
        for name in wrong:
            del self.heads[name]
        return wrong


def share_trunk(bare: nn.Module, base: Forward, base_name: str, prompters: Mapping[str, nn.Module],
                forwards: Mapping[str, Forward], features: dict[str, torch.Tensor],
                mask: torch.Tensor) -> HeadsOnTrunk | None:
    """The group of ``prompters`` that are head-only controls of ``bare`` (one head path), checked on
    ``features`` / ``mask`` (a batch with mixed cases); None when no model shares the trunk."""
    heads: dict[str, nn.Module] = {}
    path = spec = None
    for name, prompter in prompters.items():
        head = retrained_head(bare, prompter)
        if head is None or (path is not None and prompter.spec.trainable[0] != path):
            continue
        path, spec = prompter.spec.trainable[0], prompter.spec
        heads[name] = head
    if not heads:
        return None
    group = HeadsOnTrunk(base, bare, path, base_name, heads, spec.read_output)
    with torch.no_grad():
        group.check(forwards, features, mask)
    return group if group.heads else None
