"""Backbone files: build a recipe's backbone, save it, load it back, check it fits the data.

``backbone.safetensors`` holds a backbone's weights and, in its metadata, what built it: the
registry name and ``config()`` of a registered backbone (``{"backbone": "mult", "config": ...}``;
for a plain ``nn.Module`` from a plug-in's builder, without ``config()``, the keywords it was built
with), or the factory string and the keywords it was called with (``{"factory":
"pkg.module:build", "config": ...}``). ``backbone.json`` beside it repeats that for people to read.

A file is data, never code: :func:`load_backbone` rebuilds a registered backbone from the file
alone, but a factory string read from a file is provenance only. It is never imported or called;
the factory comes from the caller (``factory=`` or a recipe's ``[backbone] factory``) and must be
the one the file records.

Used by the pretrain stage (:mod:`promptkit.train.pretrain`), the experiment layer and every
method that starts from a pre-trained backbone.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

import backbones

from ._atomic import atomic_write_bytes
from .checkpoint import CheckpointError, check_layout, load_checkpoint, save_checkpoint
from .hookspec import spec_or_none
from .projections import input_projections
from .recipes import Recipe, RecipeError, check_backbone_config
from .seeding import derive_seed, seed_everything

BACKBONE_FILE = "backbone.safetensors"
"""The file name a pretrain stage writes in its directory."""


def check_feature_dims(recipe: Recipe, data: Any) -> None:
    """An explicit ``[data] feature_dims`` must equal the data's; the error gives both."""
    want = recipe.data.feature_dims
    if want is not None and dict(want) != dict(data.feature_dims):
        raise RecipeError(
            f"recipe {recipe.source or '<dict>'} says [data] feature_dims = {dict(want)}, but the data "
            f"({data.description}) has feature_dims = {dict(data.feature_dims)}"
        )


def _search(recipe: Recipe | None) -> list[Path]:
    """Where a factory's module is looked for when it is not installed: the recipe's folder."""
    folder = recipe.folder() if recipe is not None else None
    return [folder] if folder is not None else []


def backbone_kwargs(recipe: Recipe, data: Any) -> dict[str, Any]:
    """The keywords the recipe's backbone is built with: ``[backbone.config]`` plus
    ``feature_dims``, ``out_dim`` and ``task`` from the data (all three for a registered backbone;
    for a factory, those its signature names).

    Raises:
        RecipeError: the factory cannot be imported (naming the recipe and the factory), or
            ``[backbone.config]`` names a keyword it does not take (checked here, once it is
            imported: reading a recipe imports nothing).
    """
    offered = {"feature_dims": dict(data.feature_dims), "out_dim": data.out_dim, "task": data.task}
    b = recipe.backbone
    config = b.config
    if b.factory is not None:
        try:
            fn = backbones.import_factory(b.factory, _search(recipe))
        except backbones.BackboneFactoryError as e:
            raise RecipeError(f"recipe {recipe.source or '<dict>'}: [backbone] {e}") from None
        config = check_backbone_config(recipe, fn)  # keyword names by its signature, now that it is imported
        accepted = backbones.factory_parameters(fn)
        offered = {k: v for k, v in offered.items() if k in accepted}
    return {**offered, **config}


def build_backbone(recipe: Recipe, data: Any) -> nn.Module:
    """The recipe's backbone for ``data``, freshly initialised: the registered ``[backbone] name``
    or the ``[backbone] factory``, called with :func:`backbone_kwargs`. Seeded by
    ``[pretrain] seed`` so the initial weights repeat.

    Raises:
        RecipeError: ``[data] feature_dims`` disagrees with the data, or the factory fails to
            import, raises, or returns something that is not an ``nn.Module`` (naming the recipe
            and the factory).
    """
    check_feature_dims(recipe, data)
    kwargs = backbone_kwargs(recipe, data)
    seed_everything(derive_seed(recipe.pretrain.seed, "init"))
    b = recipe.backbone
    try:
        if b.factory is None:
            return backbones.create_backbone(b.name, **kwargs)
        return backbones.create_from_factory(b.factory, _search(recipe), **kwargs)
    except backbones.BackboneFactoryError as e:
        raise RecipeError(f"recipe {recipe.source or '<dict>'}: [backbone] {e}") from e


def save_backbone(
    model: nn.Module,
    path: str | Path,
    name: str | None = None,
    extra: dict[str, Any] | None = None,
    *,
    factory: str | None = None,
    config: dict[str, Any] | None = None,
) -> Path:
    """Write ``model``'s state and what rebuilds it to ``path`` (and ``path.with_suffix(".json")``).

    Args:
        name: a registered backbone: the meta is ``{"backbone": name, "config": model.config()}``;
            for a model without ``config()`` (a plain ``nn.Module`` a plug-in's builder returns,
            e.g. an MMSA model), ``config`` instead: the keywords its builder was called with.
        factory: instead of ``name``, a factory string: the meta is ``{"factory": factory,
            "config": config}``, ``config`` being the keywords it was called with.
        config: the keywords the model was built with (``create_backbone(name, **config)`` or the
            factory's call); needed for a factory, and for a registered model without ``config()``.
        extra: more JSON to keep in the meta (best epoch, test metrics, data).

    Raises:
        KeyError: ``name`` is not a registered backbone.
        ValueError: neither or both of ``name`` and ``factory``; no ``config`` where it is needed.
    """
    if (name is None) == (factory is None):
        raise ValueError("save_backbone needs exactly one of name (a registered backbone) and factory")
    if factory is not None:
        backbones.parse_factory(factory)
        if config is None:
            raise ValueError(f"save_backbone(factory={factory!r}) needs config=, the keywords the factory was called with")
        meta = {"factory": factory, "config": dict(config)}
    else:
        if not backbones.is_backbone(name):
            raise KeyError(f"unknown backbone {name!r}; known backbones: {backbones.list_backbones()}")
        meta = {"backbone": name, "config": _registered_config(model, name, config)}
    path = Path(path)
    meta.update(extra or {})
    save_checkpoint(path, model.state_dict(), meta, kind="backbone")
    atomic_write_bytes(path.with_suffix(".json"), json.dumps(meta, indent=2, default=str).encode())
    return path


def _registered_config(model: nn.Module, name: str, config: dict[str, Any] | None) -> dict[str, Any]:
    """The keywords that rebuild registered backbone ``name``: ``model.config()`` when the model has
    that method (promptkit's backbones), else ``config``, the keywords it was built with."""
    if callable(getattr(model, "config", None)):
        return dict(model.config())
    if config is None:
        raise ValueError(
            f"save_backbone(name={name!r}): {type(model).__name__} has no config() method, so pass config=, the "
            f"keywords it was built with (create_backbone({name!r}, **config) must rebuild it)"
        )
    return dict(config)


def backbone_identity(meta: dict[str, Any]) -> dict[str, str]:
    """``{"factory": ...}`` or ``{"backbone": name}`` from a backbone checkpoint's meta."""
    if meta.get("factory") is not None:
        return {"factory": str(meta["factory"])}
    return {"backbone": str(meta.get("backbone"))}


def _describe(identity: dict[str, str]) -> str:
    return f"factory {identity['factory']!r}" if "factory" in identity else f"backbone {identity['backbone']!r}"


FactoryLike = str | Callable[..., nn.Module]


def _caller_factory(path: Path, recipe: Recipe | None, factory: FactoryLike | None) -> tuple[str | None, Any]:
    """The factory the caller gives, as ``(factory string, what to build with)``: the ``factory``
    argument (a string or a callable), else the recipe's ``[backbone] factory``; ``(None, None)``
    when neither gives one.

    Raises:
        ValueError: ``factory`` is neither a string nor a callable, or disagrees with ``recipe``.
    """
    if factory is None:
        ref = recipe.backbone.factory if recipe is not None else None
        return ref, ref
    if isinstance(factory, str):
        backbones.parse_factory(factory)
        ref = factory
    elif callable(factory):
        ref = backbones.factory_ref(factory)
    else:
        raise ValueError(
            f"load_backbone({path}, factory=...): got a {type(factory).__name__}, expected a "
            "'package.module:function' string or the callable itself"
        )
    if recipe is not None and recipe.backbone.identity() != {"factory": ref}:
        raise ValueError(
            f"load_backbone({path}): factory={ref!r} disagrees with recipe {recipe.source or '<dict>'}, whose "
            f"[backbone] names {_describe(recipe.backbone.identity())}; give one of them"
        )
    return ref, factory


def load_backbone(
    path: str | Path,
    device: str | torch.device = "cpu",
    *,
    recipe: Recipe | None = None,
    factory: FactoryLike | None = None,
) -> nn.Module:
    """Rebuild and load a backbone saved by :func:`save_backbone` (eval mode).

    A registered backbone is rebuilt from the file (its registry name and config). A
    factory-built one needs the factory from the caller: nothing the file names is imported or
    called, the factory string it records is only compared with the caller's.

    Args:
        recipe: when given, the checkpoint must come from this recipe's ``[backbone]`` (the same
            registry name, or the same factory string); the recipe's factory builds the model, and
            its module is also looked for in the recipe's folder.
        factory: the factory that built the file's backbone, a ``"package.module:function"``
            string or the callable itself (named by its ``__module__`` and ``__qualname__``); it
            must be the one the file records. Called with the keywords the file records.

    Raises:
        CheckpointError: not a backbone checkpoint, corrupt, made with another backbone than
            ``recipe`` or ``factory`` names, a factory-built file loaded without its factory, a
            backbone that cannot be rebuilt here, or weights that do not fit the rebuilt model.
        ValueError: ``factory`` is not a string or a callable, or disagrees with ``recipe``.
    """
    path = Path(path)
    tensors, meta = load_checkpoint(path, kind="backbone")
    for key, want in (("factory", str), ("backbone", str), ("config", dict)):
        if meta.get(key) is not None and not isinstance(meta[key], want):
            raise CheckpointError(
                f"checkpoint {path}: meta {key!r} is a {type(meta[key]).__name__}, expected a {want.__name__}"
            )
    config = meta.get("config") or {}
    identity = backbone_identity(meta)
    ref, build = _caller_factory(path, recipe, factory)
    if recipe is not None and identity != recipe.backbone.identity():
        raise CheckpointError(
            f"checkpoint {path} was saved from {_describe(identity)}, but recipe {recipe.source or '<dict>'} "
            f"[backbone] names {_describe(recipe.backbone.identity())}; a checkpoint fits only the backbone "
            "it was made with"
        )
    if "factory" in identity:
        recorded = identity["factory"]
        if ref is None:
            raise CheckpointError(
                f"checkpoint {path} was built by factory {recorded[:200]!r} (recorded in the file); promptkit never "
                "imports or calls code a file names, so pass the factory yourself: load_backbone(path, "
                "factory='package.module:function' or the callable), or a recipe whose [backbone] factory is it "
                "(--recipe)"
            )
        if ref != recorded:
            raise CheckpointError(
                f"checkpoint {path} was saved from factory {recorded[:200]!r}, but the caller gives factory {ref!r}; "
                "a checkpoint fits only the backbone it was made with"
            )
        try:
            if isinstance(build, str):
                model = backbones.create_from_factory(build, _search(recipe), **config)
            else:
                model = backbones.call_factory(build, ref, **config)
        except backbones.BackboneFactoryError as e:
            raise CheckpointError(f"checkpoint {path} cannot be rebuilt: {e}") from e
    else:
        name = identity["backbone"]
        if ref is not None:
            raise CheckpointError(
                f"checkpoint {path} was saved from backbone {name!r} (a registered one), but the caller gives "
                f"factory {ref!r}; a checkpoint fits only the backbone it was made with"
            )
        if not backbones.is_backbone(name):
            raise CheckpointError(
                f"checkpoint {path} was saved from backbone {name!r}, which is not registered "
                f"(known backbones: {backbones.list_backbones()})"
            )
        try:
            with torch.device("meta"):  # the file's config sizes the model: no memory until it fits the tensors
                check_layout(path, tensors, backbones.create_backbone(name, **config))
            model = backbones.create_backbone(name, **config)
        except backbones.BackboneFactoryError as e:
            raise CheckpointError(f"checkpoint {path} cannot be rebuilt: {e}") from e
    check_layout(path, tensors, model)
    model.load_state_dict(tensors)
    return model.to(device).eval()


def backbone_feature_dims(model: nn.Module) -> dict[str, int] | None:
    """``model.feature_dims`` when the backbone has it (a factory's model need not)."""
    dims = getattr(model, "feature_dims", None)
    return dict(dims) if isinstance(dims, dict) else None


def transfer_backbone(path: str | Path, data: Any, *, recipe: Recipe, hooks: Any = None,
                      device: str | torch.device = "cpu") -> tuple[nn.Module, list[str]]:
    """A registered backbone of ``path`` moved into ``data``'s feature space (``[prompt] reinit_projections``).

    The backbone is rebuilt with the file's config but the data's ``feature_dims`` (and ``out_dim``
    and ``task``, for a target of another task), initialised from ``([prompt] seed, "projections")``;
    every tensor of the file is then loaded bit-identical except those of the input projections
    (:func:`promptkit.projections.input_projections`) and, where the task changed their shape, the
    head's (the spec's ``trainable`` modules): those keep the fresh init.

    Returns:
        the model (eval mode) and the names of its freshly initialised tensors.

    Raises:
        CheckpointError / ValueError: not a registered backbone's file, a modality without an input
            projection, or a tensor outside the projections and the head whose shape changed.
    """
    source = load_backbone(path, recipe=recipe)
    if recipe.backbone.factory is not None or not callable(getattr(source, "config", None)):
        raise ValueError(f"reinit_projections rebuilds registered backbones from their config(); {path} is "
                         f"{recipe.backbone.label!r}")
    spec = spec_or_none(source, hooks)
    if spec is None:
        raise ValueError(f"reinit_projections needs a hook spec for {type(source).__name__}")
    input_projections(source, spec)  # the source has one per modality (else the error names the modality)
    config = {**source.config(), "feature_dims": dict(data.feature_dims), "out_dim": data.out_dim, "task": data.task}
    seed_everything(derive_seed(recipe.prompt.seed, "projections"))
    model = backbones.create_backbone(str(recipe.backbone.name), **config)
    target_spec = spec_or_none(model, hooks)
    fresh_prefixes = [f"{p}." for p in input_projections(model, target_spec).values()]
    heads = [f"{p}." for p in target_spec.trainable]
    state, fresh = model.state_dict(), []
    for key, tensor in source.state_dict().items():
        if key not in state:
            raise CheckpointError(f"{path}: tensor {key!r} has no place in {type(model).__name__} for the target data")
        if any(key.startswith(p) for p in fresh_prefixes):
            fresh.append(key)
        elif state[key].shape != tensor.shape:
            if not any(key.startswith(p) for p in heads):
                raise ValueError(f"reinit_projections: tensor {key!r} of {path} is {tuple(tensor.shape)}, the "
                                 f"target needs {tuple(state[key].shape)}; only the input projections and the head "
                                 "may change")
            fresh.append(key)
        else:
            state[key] = tensor
    model.load_state_dict(state)
    return model.to(device).eval(), fresh


def check_backbone_fits(model: nn.Module, data: Any, what: str) -> None:
    """A backbone that declares ``feature_dims`` must have the data's; the error names ``what``."""
    dims = backbone_feature_dims(model)
    if dims is not None and dims != dict(data.feature_dims):
        raise ValueError(f"{what} expects feature_dims {dims}, the data ({data.description}) has {dict(data.feature_dims)}")
