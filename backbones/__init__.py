"""MSA backbones shipped with promptkit; each module registers itself on import."""

from ._registry import create_backbone, is_backbone, list_backbones, register_backbone
from .base import MSABackbone

__all__ = ["MSABackbone", "create_backbone", "is_backbone", "list_backbones", "register_backbone"]

from . import mult  # noqa: E402,F401  (registers "mult" and MulT's hook spec)
from . import misa, mmim, unimse  # noqa: E402,F401
