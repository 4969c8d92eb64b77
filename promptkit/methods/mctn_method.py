"""MCTN (Pham et al., AAAI 2019) as a baseline method: trained from scratch, no pre-trained backbone.

:class:`backbones.mctn.MCTN` is built for the data (its feature sizes, ``out_dim`` and task) and
every one of its weights is trained by :func:`~promptkit.train.engine.fit` with the ``[prompt]``
stage's settings (epochs, batch size, learning rate, ...) on the training split, under the paper's
missing-modality protocol at ``[prompt] eta`` (:func:`~promptkit.train.prompt_stage.eta_mask_fn`):
each batch's mask reaches the model as ``mask=``, which zeroes the missing inputs and masks the
translation losses per sample. The best-validation weights are kept; the test split is left to the
evaluation protocol.

MCTN's configuration: the recipe's ``[backbone.config]`` when ``[backbone] name = "mctn"``, else
MCTN's defaults; the keyword option ``mctn_config={...}`` overrides either. ``backbone_file`` and
``hooks`` (the pre-trained backbone's) are not used: MCTN is its own model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..feature_points import check_feature_data
from ..seeding import derive_seed, seed_everything
from ..train.engine import fit
from ..train.prompt_stage import eta_mask_fn
from .registry import TrainedMethod, register_method

__all__ = ["mctn", "mctn_forward"]


def mctn_forward(model: torch.nn.Module, modalities: tuple[str, ...]):
    """The evaluation forward ``(features {m: (B, T_m, D_m)}, mask (B, M)) -> (B, out_dim)``:
    missing inputs zeroed, then ``model(**features, mask=mask)``."""

    def forward(features: dict[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        zeroed = {m: features[m] * mask[:, i, None, None].to(features[m].dtype) for i, m in enumerate(modalities)}
        return model(**zeroed, mask=mask)

    return forward


@register_method("mctn", label="MCTN: cyclic translations", short="MCTN", trains="an MCTN model")
def mctn(recipe: Any, data: Any, backbone_file: str | Path | None, out_dir: str | Path, *, hooks: Any = None,
         **opts: Any) -> TrainedMethod:
    """Train MCTN from scratch at ``[prompt] eta`` with the ``[prompt]`` stage; every parameter trains.

    Args:
        recipe: the run's recipe (``[prompt]`` settings, ``[data] metric``, optionally
            ``[backbone] name = "mctn"`` with its config).
        data: a ``DataBundle`` (splits, modalities, feature_dims, out_dim, task).
        backbone_file: unused (MCTN does not start from the pre-trained backbone).
        out_dir: the training run's directory.
        hooks: the pre-trained backbone's spec, read only to name a module entry when the data holds
            token ids, which MCTN refuses (it translates raw features).
        opts: ``mctn_config`` (MCTN keywords), then anything :func:`~promptkit.train.engine.fit`
            takes (``device``, ``progress``, ``overwrite``, ...).
    """
    from backbones.mctn import MCTN

    check_feature_data(data, hooks if hooks is not None else getattr(recipe, "hook_spec", lambda: None)(), "MCTN")

    config: dict[str, Any] = {}
    section = getattr(recipe, "backbone", None)
    if section is not None and getattr(section, "factory", None) is None and getattr(section, "name", None) == "mctn":
        config.update(dict(section.config or {}))
    config.update(dict(opts.pop("mctn_config", None) or {}))
    kwargs = {"feature_dims": dict(data.feature_dims), "out_dim": data.out_dim, "task": data.task, **config}
    stage = recipe.prompt
    seed_everything(derive_seed(int(stage.seed), "mctn-init"))
    model = MCTN(**kwargs)
    if tuple(model.modalities) != tuple(data.modalities):
        raise ValueError(f"MCTN's modalities {list(model.modalities)} are not the data's {list(data.modalities)} "
                         "(in order); its masks would be misread")
    params = list(model.parameters())
    opts.setdefault("evaluate_test", False)  # the protocol reads the test split, once
    info = {"method": "mctn", "mctn": model.config(), "eta": stage.eta}
    result = fit(model, data, stage, out_dir, mask_fn=eta_mask_fn(data.modalities, stage.eta), params=params,
                 metric_kind=recipe.data.metric, run_info=info, **opts)
    model.eval()
    return TrainedMethod(
        name="mctn", forward=mctn_forward(model, tuple(data.modalities)),
        trainable_params=sum(p.numel() for p in params), modules={"mctn": model},
        info={"best_epoch": result.best_epoch, "eta": stage.eta, "config": model.config(),
              "source": model.source, "chain": list(model.chain)},
    )
