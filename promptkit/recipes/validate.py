"""The checks of a recipe that no one section can make: across sections, or against a registry.

Each section checks itself when it is made (:mod:`promptkit.recipes.schema`); :func:`validate`
checks the whole recipe once its sections are: ``[backbone] name`` against the backbone registry
and ``[backbone.config]`` against its builder's keywords (:func:`check_backbone_config`), the keys
``[backbone.config]`` must leave to ``[data]``, ``[prompt] checkpoint`` (the backbone's is
``[pretrain]``'s), ``[prompt] methods`` against the method registry, ``[prompt.prompter]`` and
``[cggm]`` by their owners' configs, and ``[hooks]`` as a hook spec. Imports nothing a recipe names.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from .errors import RecipeError
from .recipe import Recipe
from .typecheck import check_value, unknown_key

DATA_KEYS = ("feature_dims", "out_dim", "task")
"""The keywords a backbone gets from the data, never from ``[backbone.config]``."""


def validate(r: Recipe, where: str, check_backbone: bool = True) -> None:
    """Check what needs the whole recipe or a registry; ``where`` (``"recipe <file>"``) starts
    every message.

    Raises:
        RecipeError: naming the file, the table and the key.
    """
    _validate_backbone(r, where, check_backbone)
    for key in DATA_KEYS:
        if key in r.backbone.config:
            raise RecipeError(
                f"{where}: [backbone.config] must not set {key!r}: it comes from the data"
                + ("; put expected sizes in [data] feature_dims" if key == "feature_dims" else "")
            )
    if r.prompt.checkpoint is not None:
        raise RecipeError(f"{where}: [prompt] checkpoint is not used; a pre-trained backbone goes in [pretrain] checkpoint")
    _validate_methods(r.prompt.methods, where)
    _validate_passthrough(r, where)
    if r.hooks is not None:
        try:
            r.hook_spec(resolve=False)
        except (KeyError, TypeError, ValueError) as e:
            msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
            raise RecipeError(f"{where}: [hooks]: {msg}") from None


def _validate_backbone(r: Recipe, where: str, check_backbone: bool) -> None:
    """``[backbone] name`` registered and its ``[backbone.config]`` its builder's keywords (a
    factory's are checked when a run imports it)."""
    b = r.backbone
    if not check_backbone or b.factory is not None:
        return
    import backbones

    if not backbones.is_backbone(b.name):
        close = difflib.get_close_matches(b.name, backbones.list_backbones(), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise RecipeError(
            f"{where}: unknown backbone {b.name!r} in [backbone] name{hint} "
            f"(known backbones: {backbones.list_backbones()}; a model of your own goes in [backbone] factory)"
        )
    b.config = check_backbone_config(r, backbones.backbone_builder(b.name))


def check_backbone_config(r: Recipe, fn: Callable[..., Any]) -> dict[str, Any]:
    """``[backbone.config]`` checked against ``fn``'s keywords (names) and annotations (values):
    the config with each value as checked (ints widened to floats where a float is annotated).

    Called at load for a registered backbone's builder; for a factory, by the run that imports
    it (:func:`promptkit.backbone_files.backbone_kwargs`), since reading a recipe imports nothing.

    Raises:
        RecipeError: a key ``fn`` does not take (naming the recipe, the key, the allowed keys and
            the closest one), or a value of the wrong type.
    """
    import backbones

    b, where = r.backbone, f"recipe {r.source or '<dict>'}"
    config = dict(b.config)
    accepted = backbones.config_keywords(fn)
    if accepted is None:  # an open **kwargs: nothing to check against
        return config
    allowed = sorted(set(accepted) - set(DATA_KEYS))
    for key, value in config.items():
        if key not in accepted:
            raise RecipeError(unknown_key(key, f"[backbone.config] of {b.label}", allowed, where))
        try:
            config[key] = check_value(value, accepted[key], f"{where}: [backbone.config] {key}")
        except (TypeError, AttributeError):  # an annotation check_value cannot read (e.g. a Protocol): unchecked
            pass
    return config


def _validate_methods(methods: list[str] | None, where: str) -> None:
    """``[prompt] methods``: each a method the registry knows (:func:`promptkit.methods.get_method`)
    and a recipe may name (:func:`promptkit.methods.list_methods`: not the zero-filled reference,
    which every run scores). The registry is imported here, not when recipes are."""
    if methods is None:  # the registry's default
        return
    from ..methods import UnknownMethodError, get_method, list_methods

    for m in methods:
        try:
            get_method(m)
        except UnknownMethodError as e:
            raise RecipeError(f"{where}: [prompt] methods has {e}") from None
    nameable = list_methods()
    for m in methods:
        if m not in nameable:
            raise RecipeError(f"{where}: [prompt] methods has {m!r}, the reference every run scores unasked; "
                              f"leave it out (a recipe names: {', '.join(nameable)})")


def _validate_passthrough(r: Recipe, where: str) -> None:
    """Check ``[prompt.prompter]`` and ``[cggm]`` with their owners' configs, at load time."""
    from ..cggm import CGGMConfig
    from ..prompter import PrompterConfig

    for section, cls, table in (("[prompt.prompter]", PrompterConfig, r.prompt.prompter), ("[cggm]", CGGMConfig, r.cggm)):
        if table is None:
            continue
        try:
            cls.from_dict(dict(table))
        except (KeyError, TypeError, ValueError) as e:
            msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
            raise RecipeError(f"{where}: {section}: {msg}") from None
