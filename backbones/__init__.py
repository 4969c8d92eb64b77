"""MSA backbones shipped with promptkit; each module registers itself on import.

Installed packages add their own through the ``promptkit.backbones`` entry-point group
(:func:`load_entry_points`); any other model is built from a ``"package.module:function"``
factory string (:func:`create_from_factory`).
"""

from ._registry import (
    ENTRY_POINT_GROUP,
    BackboneFactoryError,
    backbone_builder,
    call_factory,
    config_keywords,
    create_backbone,
    create_from_factory,
    factory_parameters,
    factory_ref,
    import_factory,
    is_backbone,
    list_backbones,
    load_entry_points,
    parse_factory,
    register_backbone,
)
from .base import MSABackbone

__all__ = [
    "ENTRY_POINT_GROUP",
    "BackboneFactoryError",
    "MSABackbone",
    "backbone_builder",
    "call_factory",
    "config_keywords",
    "create_backbone",
    "create_from_factory",
    "factory_parameters",
    "factory_ref",
    "import_factory",
    "is_backbone",
    "list_backbones",
    "load_entry_points",
    "parse_factory",
    "register_backbone",
]

from . import mult  # noqa: E402,F401  (registers "mult" and MulT's hook spec)
from . import misa, mmim, unimse  # noqa: E402,F401
from . import mctn, mmin  # noqa: E402,F401  (the baselines MCTN and MMIN, with their hook specs)
