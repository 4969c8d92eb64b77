"""The pretrain stage: build the recipe's backbone for the data, train it on complete data, save it.

``out_dir/backbone.safetensors`` holds the best-validation weights and, in its metadata, the
registry name and ``config()`` of the backbone, so :func:`load_backbone` rebuilds it from the file
alone; ``backbone.json`` beside it repeats that config for people to read.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from .._atomic import atomic_write_bytes
from ..checkpoint import CheckpointError, check_layout, load_checkpoint, save_checkpoint
from ..recipes import Recipe, RecipeError
from .engine import FitResult, derive_seed, fit, seed_everything
from .plugins import TrainPlugin

BACKBONE_FILE = "backbone.safetensors"
PluginLike = TrainPlugin | Callable[[nn.Module], TrainPlugin]


def check_feature_dims(recipe: Recipe, data: Any) -> None:
    """An explicit ``[data] feature_dims`` must equal the data's; the error gives both."""
    want = recipe.data.feature_dims
    if want is not None and dict(want) != dict(data.feature_dims):
        raise RecipeError(
            f"recipe {recipe.source or '<dict>'} says [data] feature_dims = {dict(want)}, but the data "
            f"({data.description}) has feature_dims = {dict(data.feature_dims)}"
        )


def build_backbone(recipe: Recipe, data: Any) -> nn.Module:
    """``create_backbone(name, feature_dims=..., out_dim=..., task=..., **config)``, seeded by
    ``[pretrain] seed`` so the initial weights repeat."""
    import backbones

    check_feature_dims(recipe, data)
    seed_everything(derive_seed(recipe.pretrain.seed, "init"))
    return backbones.create_backbone(
        recipe.backbone.name,
        feature_dims=dict(data.feature_dims),
        out_dim=data.out_dim,
        task=data.task,
        **recipe.backbone.config,
    )


def save_backbone(model: nn.Module, path: str | Path, name: str, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s state and ``{"backbone": name, "config": model.config()}`` to ``path``."""
    import backbones

    if not backbones.is_backbone(name):
        raise KeyError(f"unknown backbone {name!r}; known backbones: {backbones.list_backbones()}")
    path = Path(path)
    meta = {"backbone": name, "config": model.config(), **(extra or {})}
    save_checkpoint(path, model.state_dict(), meta, kind="backbone")
    atomic_write_bytes(path.with_suffix(".json"), json.dumps(meta, indent=2).encode())
    return path


def load_backbone(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild and load a backbone saved by :func:`save_backbone` (eval mode).

    Raises:
        CheckpointError: not a backbone checkpoint, corrupt, or weights that do not fit the
            rebuilt model.
    """
    import backbones

    tensors, meta = load_checkpoint(path, kind="backbone")
    name = meta.get("backbone")
    if not backbones.is_backbone(name):
        raise CheckpointError(
            f"checkpoint {path} was saved from backbone {name!r}, which is not registered "
            f"(known backbones: {backbones.list_backbones()})"
        )
    model = backbones.create_backbone(name, **meta["config"])
    check_layout(path, tensors, model)
    model.load_state_dict(tensors)
    return model.to(device).eval()


def pretrain(
    recipe: Recipe,
    data: Any,
    out_dir: str | Path,
    *,
    plugins: Sequence[PluginLike] = (),
    cggm: bool = False,
    **opts: Any,
) -> FitResult:
    """Train the recipe's backbone on complete data; save ``out_dir/backbone.safetensors``.

    Args:
        recipe: a validated recipe; ``[pretrain]`` gives the stage settings (with ``compile``,
            the backbone is compiled in place before training; its saved weights are unaffected).
        data: a ``DataBundle``.
        plugins: plug-ins, or callables ``backbone -> plug-in`` (built after the backbone).
        cggm: add the CGGM plug-in configured by the recipe's ``[cggm]`` table.
        **opts: passed to :func:`~promptkit.train.engine.fit` (``resume``, ``overwrite``,
            ``device``, ``progress``).
    """
    out_dir = Path(out_dir)
    model = build_backbone(recipe, data)
    built = [p if hasattr(p, "extra_loss") else p(model) for p in plugins]
    if recipe.cggm and not cggm:
        warnings.warn(f"recipe {recipe.source or '<dict>'} has a [cggm] table; CGGM runs only with --cggm / cggm=True")
    if cggm:
        from ..cggm import CGGM

        built.append(CGGM.from_recipe_section(model, None, recipe.cggm or {}))
    run_info = {"backbone": recipe.backbone.name, "config": recipe.backbone.config, "data": recipe.data}
    result = fit(model, data, recipe.pretrain, out_dir, plugins=built, metric_kind=recipe.data.metric,
                 run_info=_jsonable(run_info), **opts)
    save_backbone(model, out_dir / BACKBONE_FILE, recipe.backbone.name,
                  {"best_epoch": result.best_epoch, "test": result.test, "data": data.description})
    return result


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=lambda o: dataclasses.asdict(o) if dataclasses.is_dataclass(o) else str(o)))
