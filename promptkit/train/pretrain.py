"""The pretrain stage: build the recipe's backbone for the data, train it on complete data, save it.

``out_dir/backbone.safetensors`` holds the best-validation weights and what built the backbone
(see :mod:`promptkit.backbone_files`, which builds, saves and loads backbone files).
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from ..backbone_files import (
    BACKBONE_FILE,
    backbone_kwargs,
    build_backbone,
    save_backbone,
    transfer_backbone,
)
from ..cggm import CGGM
from ..checkpoint import weights_digest
from ..hookspec import spec_or_none, trainable_parameters
from ..projections import with_projections_trainable
from ..plugins import TrainPlugin
from ..recipes import Recipe
from .distributed import is_main_process, main_process_first
from .engine import fit
from .results import FitResult

PluginLike = TrainPlugin | Callable[[nn.Module], TrainPlugin]


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
        cggm: add the CGGM plug-in configured by the recipe's ``[cggm]`` table (on the encoders
            of the recipe's ``[hooks]`` spec when it has one, else of the backbone's registered one).
        **opts: passed to :func:`~promptkit.train.engine.fit` (``resume``, ``overwrite``,
            ``device``, ``progress``).
    """
    out_dir = Path(out_dir)
    model = build_backbone(recipe, data)
    kwargs = backbone_kwargs(recipe, data)
    built = [p if hasattr(p, "extra_loss") else p(model) for p in plugins]
    if recipe.cggm and not cggm:
        warnings.warn(f"recipe {recipe.source or '<dict>'} has a [cggm] table; CGGM runs only with --cggm / cggm=True")
    hooks = recipe.hook_spec()  # None: the backbone's registered spec
    if cggm:
        built.append(CGGM.from_recipe_section(model, hooks, recipe.cggm or {}, task=data.task))
    run_info: dict[str, Any] = {"backbone": recipe.backbone.name, "config": recipe.backbone.config, "data": recipe.data}
    if recipe.backbone.factory is not None:  # only then: older run records of registered backbones still resume
        run_info["factory"] = recipe.backbone.factory
    if cggm and recipe.hooks is not None:
        run_info["hooks"] = recipe.hooks
    result = fit(model, data, recipe.pretrain, out_dir, hooks=hooks, plugins=built, metric_kind=recipe.data.metric,
                 run_info=_jsonable(run_info), **opts)
    extra = {"best_epoch": result.best_epoch, "test": result.test, "data": data.description}
    with main_process_first():  # one writer; the other processes of a distributed run wait for the file
        if is_main_process() and recipe.backbone.factory is not None:
            save_backbone(model, out_dir / BACKBONE_FILE, factory=recipe.backbone.factory, config=kwargs, extra=extra)
        elif is_main_process():
            save_backbone(model, out_dir / BACKBONE_FILE, recipe.backbone.name, extra, config=kwargs)
    return result


def transfer(recipe: Recipe, data: Any, backbone_file: str | Path, out_dir: str | Path, *, hooks: Any = None,
             **opts: Any) -> Path:
    """The transfer stage of ``[prompt] reinit_projections``: the backbone of ``backbone_file``
    moved into ``data``'s feature space (:func:`~promptkit.backbone_files.transfer_backbone`), its
    input projections and head trained on complete target data with the ``[prompt]`` settings,
    everything else frozen; saved as ``out_dir/backbone.safetensors``, the file every method starts from.
    """
    out_dir = Path(out_dir)
    model, fresh = transfer_backbone(backbone_file, data, recipe=recipe, hooks=hooks, device=opts.get("device") or "cpu")
    spec = with_projections_trainable(model, spec_or_none(model, hooks))
    for p in model.parameters():
        p.requires_grad_(False)
    params = {id(p): p for path in spec.trainable for p in trainable_parameters(model, path).values()}
    for p in params.values():
        p.requires_grad_(True)
    info = {**recipe.backbone.identity(), "source_weights": weights_digest(model), "transfer_from": str(backbone_file),
            "trainable": list(spec.trainable)}
    result = fit(model, data, recipe.prompt, out_dir, hooks=hooks, params=list(params.values()),
                 metric_kind=recipe.data.metric, run_info=_jsonable(info), evaluate_test=False, **opts)
    extra = {"best_epoch": result.best_epoch, "data": data.description,
             "transfer": {"from": str(backbone_file), "reinitialised": fresh, "trained": list(spec.trainable)}}
    with main_process_first():
        if is_main_process():
            save_backbone(model.eval(), out_dir / BACKBONE_FILE, recipe.backbone.name, extra)
    return out_dir / BACKBONE_FILE


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=lambda o: dataclasses.asdict(o) if dataclasses.is_dataclass(o) else str(o)))
