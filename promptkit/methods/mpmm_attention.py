"""MPMM's attention-level variant (Lee et al., CVPR 2023) as a method: ``mpmm_attn``.

On the frozen pre-trained backbone, every attention module outside the head gets, per missing
case, a learned key and value prefix of ``L`` tokens (``L`` = the recipe's ``prompt_length``):
:class:`~promptkit.methods.attention_prefix.AttentionPrefixPrompts`, whose module says how the
prefixes enter each attention call and where this departs from the paper. Missing inputs are
zero-filled; the prefixes and the head train at ``[prompt] eta`` and are saved alone as an
adapter directory (:mod:`.attention_prefix_files`). Every name of those modules is importable
from here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..backbone_files import check_backbone_fits, load_backbone
from ..checkpoint import weights_digest
from ..evaluation.protocol import Forward
from ..prompter import PrompterConfig
from ..seeding import derive_seed, seed_everything
from ..train.device import resolve_device
from ..train.distributed import is_main_process, main_process_first
from ..train.engine import fit
from ..train.prompt_stage import eta_mask_fn
from ._prompter_fit import method_hooks
from .attention_prefix import (
    AttentionPrefixPrompts,
    attention_modules,
    attention_prompt_parameters,
    attention_widths,
)
from .attention_prefix_files import (
    ADAPTER_DIR,
    ADAPTER_FILE,
    ATTN_ADAPTER,
    ATTN_KIND,
    save_attention_prompts,
)
from .registry import TrainedMethod, register_method

__all__ = [
    "ADAPTER_DIR",
    "ADAPTER_FILE",
    "ATTN_ADAPTER",
    "ATTN_KIND",
    "AttentionPrefixPrompts",
    "attention_modules",
    "attention_prompt_parameters",
    "attention_prompted_forward",
    "attention_widths",
    "load_attention_prompts",
    "mpmm_attn",
    "save_attention_prompts",
]


def load_attention_prompts(backbone: nn.Module, path: str | Path, hooks: Any = None, *,
                           check_weights: bool = True) -> AttentionPrefixPrompts:
    """:meth:`AttentionPrefixPrompts.from_pretrained`: an adapter directory, or the single file older
    promptkit wrote."""
    return AttentionPrefixPrompts.from_pretrained(backbone, path, hooks, check_weights=check_weights)


def attention_prompted_forward(model: AttentionPrefixPrompts) -> Forward:
    """The evaluation forward ``(features, mask) -> (B, out_dim)`` of a trained model."""

    def forward(features: dict[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        return model(features, mask)

    return forward


def _fit_forward(model: AttentionPrefixPrompts, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model({m: batch[m] for m in model.modality_set.names}, batch["mask"])


@register_method("mpmm_attn", label="MPMM: attention-level prompts", short="MPMM attn", trains="per-case key/value prefixes and the head")
def mpmm_attn(recipe: Any, data: Any, backbone_file: str | Path, out_dir: str | Path, *, hooks: Any = None,
              **opts: Any) -> TrainedMethod:
    """Per-case key/value prefixes on every attention module plus the head, trained by
    :func:`~promptkit.train.engine.fit` with the ``[prompt]`` stage at ``[prompt] eta`` (prompts at
    ``prompt_lr`` when set), selected on validation; writes the adapter
    directory ``out_dir/mpmm_attn_adapter``.

    ``opts`` go to ``fit`` (``device``, ``progress``, ``resume``, ``overwrite``; ``evaluate_test``
    defaults to False: the protocol reads the test split).
    """

    out_dir = Path(out_dir)
    opts = dict(opts)
    opts.setdefault("evaluate_test", False)
    stage = recipe.prompt
    cfg = PrompterConfig.from_dict(dict(stage.prompter or {}))
    backbone = load_backbone(backbone_file, device=resolve_device(opts.get("device")), recipe=recipe)
    check_backbone_fits(backbone, data, f"backbone {backbone_file}")
    weights = weights_digest(backbone)
    with torch.random.fork_rng(devices=[]):
        seed_everything(derive_seed(int(stage.seed), "prompt-init", "mpmm_attn"))
        model = AttentionPrefixPrompts(backbone, method_hooks(recipe, backbone, hooks),
                                       length=cfg.prompt_length, init_std=cfg.init_std)
    try:
        if tuple(model.modality_set.names) != tuple(data.modalities):
            raise ValueError(f"the hook spec orders modalities {list(model.modality_set.names)}, the data "
                             f"({data.description}) {list(data.modalities)}; masks would be misread")
        prompts = model.prompt_tensors()
        head = list(model.head_parameters().values())
        if stage.prompt_lr is None:
            params: Any = prompts + head
        else:
            params = [g for g in ({"params": prompts, "lr": float(stage.prompt_lr)}, {"params": head}) if g["params"]]
        run_info = {**recipe.backbone.identity(), "backbone_weights": weights, "eta": stage.eta,
                    "method": "mpmm_attn", "length": model.length}
        result = fit(model, data, stage, out_dir, forward=_fit_forward, mask_fn=eta_mask_fn(data.modalities, stage.eta),
                     params=params, metric_kind=recipe.data.metric, run_info=run_info, **opts)
    except BaseException:
        model.remove()
        raise
    model.eval()
    path = out_dir / ADAPTER_DIR
    with main_process_first():
        if is_main_process():
            model.save_pretrained(path)
    n_prompts = model.prompt_parameters()
    n_head = sum(p.numel() for p in model.head_parameters().values())
    return TrainedMethod(
        name="mpmm_attn", forward=attention_prompted_forward(model), trainable_params=n_prompts + n_head,
        modules={"model": model},
        info={"best_epoch": result.best_epoch, "best_valid": result.best_valid, "eta": stage.eta,
              "length": model.length, "attention_modules": list(model.attention_names),
              "prompt_sets": len(model.modality_set.cases), "adapter": str(path),
              "counts": {"prompts": n_prompts, "head": n_head}},
    )
