"""Modality substitution (MS) and modality dropout (MD): the paper's baselines of Sec. 4.2.

- **MS** (``ms_zero``, ``ms_mean``): the complete-trained (pre-trained) backbone, untouched; at test
  time every missing modality of a sample is replaced by a default value: zeros (``ms_zero``, the
  same as :func:`~promptkit.evaluation.zero_filled_forward`) or the *training split's* mean per
  feature (``ms_mean``). Nothing trains (0 trainable parameters).
- **MD** (``md_zero``, ``md_mean``): every backbone weight trained with modalities dropped at the
  recipe's ``[prompt] eta`` (the prompt stage's protocol and settings) and substituted as in MS.
  ``md_zero`` is the ``full_finetune`` control of :mod:`promptkit.methods.controls`;
  ``md_mean`` is the same training with the training means substituted instead of zeros.

Fill values. :func:`training_means` gives one ``(D_m,)`` vector per modality: the mean over the
*valid* time steps of the training split's samples, a valid step being one whose features are not
all exactly zero (the data's left zero padding, as in the MulT pickles, is excluded; a real step that
happens to be all zero is indistinguishable from padding and is excluded too). A missing modality of
a sample is then the mean on every one of its ``T_m`` steps: its padding layout is unknown when the
modality is missing, so no step is kept as padding. A modality without any valid training step gets
zeros.

:func:`substitute` is the one place a fill happens; the MD training forward
(:func:`substituted_fit_forward`) and the evaluation forward (:func:`substituted_forward`) both call
it, so a model is evaluated with exactly the fill it was trained with.

A modality whose hook spec entry names a module (a :class:`~promptkit.hook_targets.FeatureModule`:
token-id text, a ``(tensor, lengths)`` input) is filled where its features are: its raw input's
missing rows are zeroed, and the missing rows of its extractor's output are set to the fill there
(:func:`promptkit.feature_points.fill_at_extractors`): zeros, or its mean feature at that output
(:func:`mean_fill`: :func:`~promptkit.feature_points.extractor_means` of the pre-trained backbone
over the training split, measured once before any training, so MD trains and is evaluated with the
same fill). The mean of its raw input (token ids) would be no feature.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..backbone_files import check_backbone_fits, load_backbone
from ..checkpoint import weights_digest
from ..data import MSADataset
from ..evaluation.protocol import Forward
from ..feature_points import batch_size_of, extractor_means, fill_at_extractors, zero_rows
from ..hookspec import HookSpec, backbone_caller, spec_or_none
from ..modalities import check_mask
from ..recipes import Recipe
from ..train.device import resolve_device
from ..train.engine import fit
from ..train.prompt_stage import eta_mask_fn
from .controls import full_finetune
from .registry import TrainedMethod, register_method

__all__ = [
    "FillValues",
    "mean_fill",
    "substitute",
    "substitute_for",
    "substituted_fit_forward",
    "substituted_forward",
    "train_md",
    "training_means",
]

FillValues = Mapping[str, torch.Tensor]
"""Modality → fill vector ``(D_m,)``; a modality left out (or ``None`` for all) is filled with zeros."""

_CHUNK = 1024  # samples per step of the mean, so a large split is never copied to float64 at once


def training_means(dataset: MSADataset, modalities: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """The mean per feature over the valid (not all-zero) steps of every sample of ``dataset``.

    Args:
        dataset: the split the means come from (the methods pass the **training** split).
        modalities: the modalities to average (default: all of them).

    Returns:
        modality → ``(D_m,)`` float32 on the CPU; zeros for a modality without any valid step.
    """
    means: dict[str, torch.Tensor] = {}
    for m in dataset.modalities if modalities is None else modalities:
        x = dataset.features[m]
        total = torch.zeros(x.shape[-1], dtype=torch.float64)
        steps = 0
        for start in range(0, x.shape[0], _CHUNK):
            chunk = x[start : start + _CHUNK].double()  # (n, T, D)
            valid = chunk.abs().amax(-1) > 0  # (n, T): padding steps are exactly zero
            total += chunk[valid].sum(0)
            steps += int(valid.sum())
        means[m] = (total / steps if steps else total).float()
    return means


def substitute(
    features: Mapping[str, torch.Tensor],
    mask: torch.Tensor,
    modalities: Sequence[str],
    fill: FillValues | None = None,
) -> dict[str, torch.Tensor]:
    """Replace every missing modality of every sample by its fill value.

    Args:
        features: ``{m: (B, T_m, D_m)}``.
        mask: ``(B, M)`` bool, True = available; columns in ``modalities`` order.
        modalities: the mask's column order.
        fill: modality → ``(D_m,)``, broadcast over the sample's ``T_m`` steps; None (or a
            modality not in it): zeros.

    Returns:
        ``{m: (B, T_m, D_m)}``: an available modality as given, a missing one the fill on every step.
    """
    check_mask(mask, len(modalities), next(iter(features.values())).shape[0] if features else None)
    out: dict[str, torch.Tensor] = {}
    for i, m in enumerate(modalities):
        if m not in features:
            raise KeyError(f"features have no modality {m!r} (they have {sorted(features)})")
        x = features[m]
        value = None if fill is None else fill.get(m)
        if value is None:
            value = x.new_zeros(())
        else:
            if value.shape != (x.shape[-1],):
                raise ValueError(f"fill of {m!r} has shape {tuple(value.shape)}, its features (B, T, {x.shape[-1]})")
            value = value.to(device=x.device, dtype=x.dtype)
        out[m] = torch.where(mask[:, i, None, None].to(x.device), x, value)
    return out


def substitute_for(
    spec: HookSpec | None, features: Mapping[str, Any], mask: torch.Tensor, modalities: Sequence[str],
    fill: FillValues | None = None,
) -> dict[str, Any]:
    """:func:`substitute` for a backbone with hook spec ``spec``: a module entry's raw input (token
    ids, a ``(tensor, lengths)`` tuple) has its missing rows zeroed by
    :func:`~promptkit.feature_points.zero_rows` (its fill value, if any, belongs at its extractor's
    output: :func:`_at_extractors`); every other modality as :func:`substitute` fills it."""
    modules = {} if spec is None else spec.feature_modules
    if not modules:
        return substitute(features, mask, modalities, fill)
    batch = batch_size_of(next(iter(features.values())))
    placeholder = torch.zeros(batch, 1, 1, device=mask.device)  # stands in for a module entry's input
    plain_fill = None if fill is None else {m: v for m, v in fill.items() if m not in modules}
    out = substitute({m: placeholder if m in modules else x for m, x in features.items()}, mask, modalities,
                     plain_fill)
    out.update({m: zero_rows(features[m], mask[:, i]) for i, m in enumerate(modalities) if m in modules})
    return out


def _at_extractors(model: nn.Module, spec: HookSpec | None, mask: torch.Tensor, fill: FillValues | None):
    """The fill of each module entry's extractor output for one call (zeros where ``fill`` has none)."""
    modules = {} if spec is None else spec.feature_modules
    values = None if fill is None else {m: v for m, v in fill.items() if m in modules and v is not None}
    return fill_at_extractors(model, spec, mask, values)


def mean_fill(model: nn.Module, spec: HookSpec | None, dataset: MSADataset) -> dict[str, torch.Tensor]:
    """The mean fill of every modality: :func:`training_means` of the raw features, and for a
    module entry its mean feature at its extractor's output, from ``model`` as it is now
    (:func:`~promptkit.feature_points.extractor_means`) over ``dataset`` (the training split)."""
    modules = {} if spec is None else spec.feature_modules
    means = training_means(dataset, [m for m in dataset.modalities if m not in modules])
    if modules:
        means.update(extractor_means(model, spec, dataset.features))
    return {m: means[m] for m in dataset.modalities}


def substituted_forward(
    backbone: nn.Module, modalities: Sequence[str], fill: FillValues | None = None, hooks: Any = None
) -> Forward:
    """The evaluation forward ``(features, mask) -> (B, out_dim)``: :func:`substitute`, then the
    backbone through :func:`promptkit.hookspec.backbone_caller` (``hooks``: a spec for a backbone
    without a registered one)."""

    call = backbone_caller(backbone, hooks)
    spec = spec_or_none(backbone, hooks)
    modalities = tuple(modalities)

    def forward(features: dict[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        with _at_extractors(backbone, spec, mask, fill):
            return call(substitute_for(spec, features, mask, modalities, fill))

    return forward


def substituted_fit_forward(
    modalities: Sequence[str], fill: FillValues | None = None, hooks: Any = None
) -> Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor]:
    """The training forward ``(model, batch) -> (B, out_dim)`` for :func:`~promptkit.train.engine.fit`:
    the batch's modalities with :func:`substitute` applied under ``batch["mask"]``."""

    modalities = tuple(modalities)
    callers: dict[int, tuple[Callable[..., torch.Tensor], HookSpec | None]] = {}  # resolved once per model

    def forward(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if id(model) not in callers:
            callers[id(model)] = backbone_caller(model, hooks), spec_or_none(model, hooks)
        call, spec = callers[id(model)]
        with _at_extractors(model, spec, batch["mask"], fill):
            return call(substitute_for(spec, {m: batch[m] for m in modalities}, batch["mask"], modalities, fill))

    return forward


def _hooks(recipe: Recipe, hooks: Any) -> Any:
    """The hooks given, else the recipe's ``[hooks]`` spec (None: the backbone's registered one)."""
    return hooks if hooks is not None else recipe.hook_spec()


def _device(opts: Mapping[str, Any]) -> torch.device:

    return resolve_device(opts.get("device"))


def _ms(name: str, recipe: Recipe, data: Any, backbone_file: str | Path, means: bool,
        hooks: Any, opts: Mapping[str, Any]) -> TrainedMethod:

    bare = load_backbone(backbone_file, device=_device(opts), recipe=recipe)
    check_backbone_fits(bare, data, f"backbone {backbone_file}")
    fill = mean_fill(bare, spec_or_none(bare, _hooks(recipe, hooks)), data.splits["train"]) if means else None
    info: dict[str, Any] = {"fill": "zero" if fill is None else "train_mean", "backbone_file": str(backbone_file)}
    if fill is not None:
        info["fill_values"] = {m: v.clone() for m, v in fill.items()}
    return TrainedMethod(name=name, forward=substituted_forward(bare, data.modalities, fill, _hooks(recipe, hooks)),
                         trainable_params=0, modules={"backbone": bare}, info=info)


@register_method("ms_zero", label="MS: zero substitution", short="MS zero", trains="nothing")
def ms_zero(recipe: Recipe, data: Any, backbone_file: str | Path, out_dir: str | Path, *, hooks: Any = None,
            **opts: Any) -> TrainedMethod:
    """MS with zeros: the pre-trained backbone, every missing modality zero (no training)."""
    return _ms("ms_zero", recipe, data, backbone_file, False, hooks, opts)


@register_method("ms_mean", label="MS: training-mean substitution", short="MS mean", trains="nothing")
def ms_mean(recipe: Recipe, data: Any, backbone_file: str | Path, out_dir: str | Path, *, hooks: Any = None,
            **opts: Any) -> TrainedMethod:
    """MS with the training split's means (:func:`mean_fill`; no training)."""
    return _ms("ms_mean", recipe, data, backbone_file, True, hooks, opts)


@register_method("md_zero", label="MD: modality dropout, zeros", short="MD zero", trains="every backbone weight")
def md_zero(recipe: Recipe, data: Any, backbone_file: str | Path, out_dir: str | Path, *, hooks: Any = None,
            **opts: Any) -> TrainedMethod:
    """MD with zeros: the ``full_finetune`` control (every weight trained at ``[prompt] eta`` on
    zero-filled inputs), evaluated through its prompter."""

    done = full_finetune(recipe, data, backbone_file, out_dir, hooks=_hooks(recipe, hooks), **opts)
    done.name = "md_zero"
    done.info.update(fill="zero", eta=recipe.prompt.eta)
    return done


def train_md(recipe: Recipe, data: Any, backbone: nn.Module, out_dir: str | Path, fill: FillValues | None, *,
             hooks: Any = None, run_info: Mapping[str, Any] | None = None, **opts: Any) -> Any:
    """Train every weight of ``backbone`` with the ``[prompt]`` stage at ``[prompt] eta``, each
    dropped modality substituted by :func:`substitute` with ``fill`` (training and validation).

    Returns:
        the :class:`~promptkit.train.engine.FitResult` (no test split read); ``backbone`` holds the
        best-validation weights, in eval mode.
    """

    for p in backbone.parameters():
        p.requires_grad_(True)
    info = {**recipe.backbone.identity(), "backbone_weights": weights_digest(backbone), "eta": recipe.prompt.eta,
            "fill": "zero" if fill is None else "train_mean", **(run_info or {})}
    result = fit(backbone, data, recipe.prompt, out_dir, forward=substituted_fit_forward(data.modalities, fill, hooks),
                 mask_fn=eta_mask_fn(data.modalities, recipe.prompt.eta), params=list(backbone.parameters()),
                 metric_kind=recipe.data.metric, run_info=info, evaluate_test=False, **opts)
    backbone.eval()
    return result


@register_method("md_mean", label="MD: modality dropout, training means", short="MD mean", trains="every backbone weight")
def md_mean(recipe: Recipe, data: Any, backbone_file: str | Path, out_dir: str | Path, *, hooks: Any = None,
            **opts: Any) -> TrainedMethod:
    """MD with the training means: :func:`train_md` with :func:`training_means`, evaluated with
    the same fill."""

    backbone = load_backbone(backbone_file, device=_device(opts), recipe=recipe)
    check_backbone_fits(backbone, data, f"backbone {backbone_file}")
    spec = _hooks(recipe, hooks)
    fill = mean_fill(backbone, spec_or_none(backbone, spec), data.splits["train"])  # before any training
    result = train_md(recipe, data, backbone, out_dir, fill, hooks=spec, run_info={"method": "md_mean"}, **opts)
    return TrainedMethod(
        name="md_mean", forward=substituted_forward(backbone, data.modalities, fill, spec),
        trainable_params=sum(p.numel() for p in backbone.parameters()), modules={"backbone": backbone},
        info={"fill": "train_mean", "fill_values": {m: v.clone() for m, v in fill.items()},
              "best_epoch": result.best_epoch, "eta": recipe.prompt.eta},
    )
