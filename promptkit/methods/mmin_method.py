"""MMIN (Zhao, Li and Jin, ACL 2021) as a method: the missing modality imagination network trained
on the target data under the paper's missing protocol.

:func:`mmin_method` builds a fresh :class:`backbones.mmin.MMIN` for the data (its ``feature_dims``,
``out_dim`` and ``task``; other MMIN keywords from the ``mmin_config`` option), initialised from a
seed derived from ``[prompt] seed``, and trains **every** weight from scratch with
:func:`~promptkit.train.engine.fit` on the data's train split, using the recipe's ``[prompt]``
stage settings (epochs, lr, batch size, ...) and its masks drawn at ``[prompt] eta``
(:func:`~promptkit.train.prompt_stage.eta_mask_fn`). The loss is the task loss plus MMIN's weighted
imagination and cycle-consistency losses (its :meth:`~backbones.base.MSABackbone.auxiliary_loss`).

Training batches keep the dropped modalities' real features: the mask tells MMIN which ones the
prediction may use (it zeroes their representations itself), and the real ones are the targets
of the imagination loss, as in the paper, where training data is complete and missing cases are
simulated. Evaluation (:func:`mmin_forward`) zeroes every missing input before the call as well,
so nothing about a missing modality reaches the model at test time.

Departure from the paper: MMIN pre-trains its modality encoders on complete data and takes the
imagination targets from those fixed encoders; here there is no such pre-training stage, the
encoders train jointly with the CRAs and the targets are the encoders' own outputs on the complete
inputs, detached. The pre-trained backbone in ``backbone_file`` is not used (MMIN is its own
architecture); its path is recorded in ``info``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..checkpoint import weights_digest
from ..evaluation.protocol import Forward
from ..feature_points import check_feature_data
from ..modalities import check_mask
from ..recipes import Recipe
from ..seeding import derive_seed
from ..train.engine import fit
from ..train.prompt_stage import eta_mask_fn
from .registry import TrainedMethod, register_method

if TYPE_CHECKING:  # imported where used: promptkit must import without the backbones package loaded
    from backbones.mmin import MMIN

__all__ = ["build_mmin", "mmin_fit_forward", "mmin_forward", "mmin_method"]


def build_mmin(data: Any, seed: int, config: Mapping[str, Any] | None = None) -> MMIN:
    """A fresh MMIN for ``data`` (its ``feature_dims``, ``out_dim``, ``task``), initialised from ``seed``
    without touching the global RNG state.

    Raises:
        ValueError: ``config`` sets one of the data-given keywords to something else.
    """
    from backbones.mmin import MMIN


    cfg = dict(config or {})
    given = {"feature_dims": dict(data.feature_dims), "out_dim": int(data.out_dim), "task": data.task}
    for key, value in given.items():
        if key in cfg and cfg[key] != value:
            raise ValueError(f"mmin_config sets {key}={cfg[key]!r}, the data ({data.description}) has {value!r}")
        cfg[key] = value
    if tuple(cfg["feature_dims"]) != tuple(data.modalities):
        raise ValueError(
            f"the data's feature_dims order {list(cfg['feature_dims'])} differs from its modalities "
            f"{list(data.modalities)}; masks would be misread"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(int(seed), "mmin", "init"))
        return MMIN(**cfg)


def mmin_fit_forward(model: MMIN, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The training forward for :func:`~promptkit.train.engine.fit`: ``model(**features, mask=batch["mask"])``
    on the complete features (the dropped ones are the imagination targets; MMIN hides them from
    its prediction) → ``(B, out_dim)``."""
    return model(**{m: batch[m] for m in model.modalities}, mask=batch["mask"])


def mmin_forward(model: MMIN) -> Forward:
    """The evaluation forward ``(features {m: (B, T_m, D_m)}, mask (B, M) bool) -> (B, out_dim)``:
    every missing input zeroed, then ``model(**features, mask=mask)``."""
    modalities = tuple(model.modalities)

    def forward(features: dict[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        check_mask(mask, len(modalities), next(iter(features.values())).shape[0] if features else None)
        zeroed = {}
        for i, m in enumerate(modalities):
            if m not in features:
                raise KeyError(f"features have no modality {m!r} (they have {sorted(features)})")
            x = features[m]
            zeroed[m] = torch.where(mask[:, i, None, None].to(x.device), x, x.new_zeros(()))
        return model(**zeroed, mask=mask)

    return forward


@register_method("mmin", label="MMIN: missing modality imagination", short="MMIN", trains="an MMIN model")
def mmin_method(recipe: Recipe, data: Any, backbone_file: str | Path, out_dir: str | Path, *, hooks: Any = None,
                **opts: Any) -> TrainedMethod:
    """Train MMIN from scratch on ``data``'s train split with the ``[prompt]`` stage at ``[prompt] eta``.

    Args:
        recipe: its ``[prompt]`` section gives the stage settings, ``eta`` and the init seed, its
            ``[data] metric`` the model selection metric.
        data: the target ``DataBundle``.
        backbone_file: the pre-trained backbone; not used by MMIN (recorded in ``info``).
        out_dir: the fit's run directory.
        hooks: the pre-trained backbone's spec (None: the recipe's ``[hooks]``), read only to name a
            module entry when the data holds token ids, which MMIN refuses (it translates raw features).
        opts: ``mmin_config`` (MMIN keywords, e.g. ``{"d_model": 16}``), else passed to
            :func:`~promptkit.train.engine.fit` (``device``, ``progress``, ``resume``, ...;
            ``evaluate_test`` defaults to False: the protocol reads the test split).

    Returns:
        a :class:`TrainedMethod` whose forward is :func:`mmin_forward`, with every MMIN weight trainable.
    """

    check_feature_data(data, hooks if hooks is not None else recipe.hook_spec(), "MMIN")
    opts = dict(opts)
    config = opts.pop("mmin_config", None) or {}
    opts.setdefault("evaluate_test", False)
    stage = recipe.prompt
    model = build_mmin(data, int(stage.seed), config)
    info = {"method": "mmin", "mmin": model.config(), "mmin_weights": weights_digest(model), "eta": stage.eta}
    result = fit(model, data, stage, Path(out_dir), forward=mmin_fit_forward,
                 mask_fn=eta_mask_fn(data.modalities, stage.eta), params=list(model.parameters()),
                 metric_kind=recipe.data.metric, run_info=info, **opts)
    model.eval()
    return TrainedMethod(
        name="mmin", forward=mmin_forward(model), trainable_params=sum(p.numel() for p in model.parameters()),
        modules={"mmin": model},
        info={"best_epoch": result.best_epoch, "eta": stage.eta, "config": model.config(),
              "backbone_file": str(backbone_file), "encoders_pretrained": False},
    )
