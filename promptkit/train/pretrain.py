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
)
from ..cggm import CGGM
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


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=lambda o: dataclasses.asdict(o) if dataclasses.is_dataclass(o) else str(o)))
