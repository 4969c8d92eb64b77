"""The lower bound (LB) of the paper's Sec. 4.2: one separately trained model per missing case.

For every incomplete case of the data's modality set (six for three modalities) a fresh backbone
(:func:`~promptkit.train.pretrain.build_backbone`) is trained with
:func:`~promptkit.train.engine.fit` on the data's **train** split with that case's mask fixed: the
case's absent modalities are zero in training, in validation and at test time
(:func:`promptkit.methods.substitution.substitute` with zeros), so each model learns only from the
modalities its case has. The stage settings are the recipe's ``[pretrain]`` ones (epochs, lr,
batch size, ...), each case in its own directory ``out_dir/case<id>-<modalities>``. The seed is the
*training* seed, ``[prompt] seed``, as for every other method: the case models' initial weights,
shuffling and masks change with it, so LB's spread over training seeds is a real one (the
``[pretrain] seed`` belongs to the shared pre-trained backbone, the same for every training seed).

Where LB trains: in the paper's transfer setting the complete model is pre-trained on the source
domain, and an LB model would be too. Here each LB model trains on the *target's* train split
instead: cheaper, and what a lower bound means here - the best one can do from the target data
with only these modalities and no transfer from a complete model.

Evaluation (:func:`lb_forward`) dispatches per sample by the sample's case: a sample whose mask is
case ``c`` goes through model ``c``; the complete case uses the complete-trained (pre-trained)
backbone from ``backbone_file``, which LB does not train. A modality the hook spec reads at a module
(token-id text) is zeroed there, at its extractor's output, in training and at test time alike.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..backbone_files import build_backbone, check_backbone_fits, load_backbone
from ..evaluation.protocol import Forward
from ..feature_points import take_rows, zero_at_extractors
from ..hookspec import backbone_caller, spec_or_none
from ..modalities import MissingCase, ModalitySet
from ..recipes import Recipe
from ..train.engine import fit
from .registry import TrainedMethod, register_method
from .substitution import _device, _hooks, substitute, substitute_for, substituted_fit_forward

__all__ = ["case_dir", "lb_forward", "train_case_model"]


def case_dir(case: MissingCase) -> str:
    """A directory name for ``case`` that is safe everywhere: ``"case2-text-audio"``."""
    return f"case{case.id}-" + "-".join(case.available)


def train_case_model(recipe: Recipe, data: Any, case: MissingCase, out_dir: str | Path, *, hooks: Any = None,
                     **opts: Any) -> tuple[nn.Module, Any]:
    """A fresh backbone trained with ``[pretrain]`` on the train split, ``case``'s mask fixed.

    Args:
        case: the modalities the model may see; every other one is zero in training and validation.
            The initial weights and the stage are seeded by ``recipe.prompt.seed`` (the training seed).
        **opts: passed to :func:`~promptkit.train.engine.fit` (device, resume, overwrite, progress).

    Returns:
        ``(model in eval mode with the best-validation weights, FitResult)``; no test split read.
    """

    ms = ModalitySet(data.modalities)
    recipe = recipe.replace(pretrain=dataclasses.replace(recipe.pretrain, seed=recipe.prompt.seed))

    def mask_fn(batch: dict[str, torch.Tensor], epoch: int, generator: torch.Generator) -> torch.Tensor:
        return ms.case_mask(case, batch["labels"].shape[0])

    model = build_backbone(recipe, data)
    run_info = {**recipe.backbone.identity(), "config": dict(recipe.backbone.config), "method": "lb",
                "case": case.name, "available": list(case.available)}
    result = fit(model, data, recipe.pretrain, out_dir, forward=substituted_fit_forward(data.modalities, None, hooks),
                 mask_fn=mask_fn, metric_kind=recipe.data.metric, run_info=run_info, evaluate_test=False, **opts)
    return model.eval(), result


def lb_forward(models: Mapping[int, nn.Module], modalities: Sequence[str], hooks: Any = None) -> Forward:
    """``(features, mask) -> (B, out_dim)``: each sample through the model of its case.

    Args:
        models: case id (:class:`~promptkit.modalities.MissingCase` ``.id``) → backbone. Every case
            a mask may hold needs one; a sample's absent modalities are zeroed before its model.
        modalities: the mask's column order.
    """

    modalities = tuple(modalities)
    ms = ModalitySet(modalities)
    callers: dict[int, Callable[..., torch.Tensor]] = {c: backbone_caller(m, hooks) for c, m in models.items()}
    specs = {c: spec_or_none(m, hooks) for c, m in models.items()}

    def forward(features: dict[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        ids = ms.case_ids_from_masks(mask)
        out: torch.Tensor | None = None
        for cid in torch.unique(ids).tolist():
            if cid not in callers:
                raise KeyError(f"LB has no model for case {ms.case_name(cid)} (id {cid}); it has cases "
                               f"{[ms.case_name(c) for c in sorted(callers)]}")
            rows = (ids == cid).nonzero().flatten()
            part = {m: take_rows(x, rows) for m, x in features.items()}
            with zero_at_extractors(models[cid], specs[cid], mask[rows]):
                spec = specs[cid]
                filled = (substitute_for(spec, part, mask[rows], modalities) if spec is not None and spec.feature_modules
                          else substitute(part, mask[rows], modalities))
                preds = callers[cid](filled)
            if out is None:
                out = preds.new_empty((mask.shape[0], *preds.shape[1:]))
            out[rows] = preds.to(out.dtype)
        assert out is not None  # a mask has at least one row
        return out

    return forward


@register_method("lb", label="LB: a model per case", short="LB", trains="a backbone per missing case")
def lb(recipe: Recipe, data: Any, backbone_file: str | Path, out_dir: str | Path, *, hooks: Any = None,
       **opts: Any) -> TrainedMethod:
    """LB: one model per incomplete case trained on that case's modalities only, the complete case
    by the pre-trained backbone; trainable_params counts the case models' weights (all trained)."""

    out_dir = Path(out_dir)
    spec = _hooks(recipe, hooks)
    ms = ModalitySet(data.modalities)
    complete = load_backbone(backbone_file, device=_device(opts), recipe=recipe)
    check_backbone_fits(complete, data, f"backbone {backbone_file}")
    models: dict[int, nn.Module] = {}
    best: dict[str, int] = {}
    for case in ms.incomplete_cases:
        model, result = train_case_model(recipe, data, case, out_dir / case_dir(case), hooks=spec, **opts)
        models[case.id], best[case.name] = model, result.best_epoch
    trained = sum(p.numel() for m in models.values() for p in m.parameters())
    models[ms.complete_case.id] = complete
    return TrainedMethod(
        name="lb", forward=lb_forward(models, data.modalities, spec), trainable_params=trained,
        modules={ms.case_name(c): m for c, m in models.items()},
        info={"best_epoch": best, "stage": "pretrain", "trained_on": "train split of the target data",
              "complete_case": f"pre-trained backbone {backbone_file}"},
    )
