"""Fitting a method that is a prompter (MPLMM, the controls, MPMM): the prompt stage, then the
record the evaluation reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..backbone_files import load_backbone
from ..evaluation.protocol import prompted_forward
from ..hookspec import spec_or_none
from ..projections import with_projections_trainable
from ..prompter import MissingModalityPrompter, PrompterConfig
from ..train.device import resolve_device
from ..train.prompt_stage import prompt_tune
from .registry import TrainedMethod


def recipe_prompter_config(recipe: Any) -> PrompterConfig:
    """The recipe's MPLMM prompts, ``[prompt.prompter]``."""
    return PrompterConfig.from_dict(dict(recipe.prompt.prompter or {}))


def method_hooks(recipe: Any, backbone: Any, hooks: Any = None) -> Any:
    """The spec a method that freezes ``backbone`` trains through: ``hooks``, else the recipe's
    ``[hooks]`` (None: the registered spec); with ``[prompt] reinit_projections``, with the input
    projections added to its trainable modules (:func:`~promptkit.projections.with_projections_trainable`)."""
    spec = hooks if hooks is not None else recipe.hook_spec()
    if not getattr(recipe.prompt, "reinit_projections", False):
        return spec
    return with_projections_trainable(backbone, spec_or_none(backbone, spec))


def fit_prompter(
    name: str,
    recipe: Any,
    data: Any,
    backbone_file: str | Path,
    out_dir: str | Path,
    *,
    config: PrompterConfig,
    prompter_cls: type[MissingModalityPrompter] = MissingModalityPrompter,
    hooks: Any = None,
    **opts: Any,
) -> TrainedMethod:
    """Load the pre-trained backbone, train a ``prompter_cls`` with ``config`` by the prompt stage at
    ``[prompt] eta`` (init seeded by ``name``) and return it as a :class:`TrainedMethod`.

    ``opts`` go to :func:`~promptkit.train.prompt_stage.prompt_tune` (``device``, ``resume``,
    ``overwrite``, ``progress``, ``cggm``, ...); the test split is left to the protocol.
    """
    opts.setdefault("evaluate_test", False)  # the protocol reads the test split, once
    backbone = load_backbone(backbone_file, device=resolve_device(opts.get("device")), recipe=recipe)
    model, result = prompt_tune(recipe, data, backbone, Path(out_dir), hooks=method_hooks(recipe, backbone, hooks),
                                method=name, config=config, prompter_cls=prompter_cls, **opts)
    model.eval()
    summary = model.trainable_summary()
    return TrainedMethod(
        name=name, forward=prompted_forward(model), trainable_params=int(summary["trainable_params"]),
        modules={"prompter": model},
        info={"best_epoch": result.best_epoch, "trainable": summary, "counts": {"prompts": int(summary["prompt_params"])}},
    )
