"""An entry point's target: importing this module registers ``foreign_msa`` and its hook spec;
:func:`register` (the function form) registers ``foreign_msa_wide`` too."""

from __future__ import annotations

from backbones import register_backbone
from promptkit.hookspec import HookSpec, register_hook_spec

from .models import ForeignMSA, hooks


@register_backbone
def foreign_msa(feature_dims=None, out_dim: int = 1, task: str = "regression", dim: int = 8) -> ForeignMSA:
    """A foreign test backbone (registered through an entry point)."""
    return ForeignMSA(feature_dims or {"text": 300, "audio": 5, "vision": 20}, out_dim=out_dim, dim=dim)


@register_hook_spec(ForeignMSA)
def _spec(model: ForeignMSA) -> HookSpec:
    return HookSpec.from_dict(hooks(tuple(model.feature_dims)))


def register() -> None:
    """The function form of an entry point: called once, with no arguments."""

    @register_backbone
    def foreign_msa_wide(feature_dims=None, out_dim: int = 1, task: str = "regression") -> ForeignMSA:
        """The wide variant."""
        return ForeignMSA(feature_dims or {"text": 300, "audio": 5, "vision": 20}, out_dim=out_dim, dim=16)
