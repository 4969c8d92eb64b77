"""The prompt stage: wrap a pre-trained backbone, train the prompts with missing rate eta.

Each training sample gets a missing case re-drawn every epoch by the paper's protocol (with
probability eta one of the incomplete cases uniformly, else complete), from a generator seeded by
``(seed, epoch)``. Validation uses the same protocol with fixed masks, so the selected epoch is the
best one *under missing modalities*; the final figures come from the test split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..modalities import ModalitySet
from ..prompter import MissingModalityPrompter, PrompterConfig, wrap
from ..recipes import Recipe
from .engine import FitResult, fit
from .plugins import TrainPlugin

ADAPTER_DIR = "adapter"


def eta_mask_fn(modalities: Sequence[str], eta: float):
    """``mask_fn(batch, epoch, generator) -> (B, M)`` drawing the paper's training protocol."""
    ms = ModalitySet(modalities)
    ms.sample_masks(0, eta)  # validates eta before any training starts

    def mask_fn(batch: dict[str, torch.Tensor], epoch: int, generator: torch.Generator) -> torch.Tensor:
        return ms.sample_masks(batch["labels"].shape[0], eta, generator)

    return mask_fn


def wrap_for_data(backbone: nn.Module, data: Any, config: PrompterConfig, hooks=None) -> MissingModalityPrompter:
    """Wrap ``backbone`` and check that its spec and the data agree on the modality order."""
    prompter = wrap(backbone, hooks=hooks, config=config)
    if tuple(prompter.modality_set.names) != tuple(data.modalities):
        raise ValueError(
            f"the hook spec orders modalities {list(prompter.modality_set.names)}, the data "
            f"({data.description}) {list(data.modalities)}; masks would be misread"
        )
    return prompter


def prompt_tune(
    recipe: Recipe,
    data: Any,
    backbone: nn.Module,
    out_dir: str | Path,
    *,
    hooks=None,
    plugins: Sequence[TrainPlugin] = (),
    cggm: bool = False,
    **opts: Any,
) -> tuple[MissingModalityPrompter, FitResult]:
    """Train MPLMM prompts on a frozen ``backbone``; save the adapter to ``out_dir/adapter``.

    Args:
        recipe: ``[prompt]`` gives the stage settings, ``eta`` and the ``prompter`` table. With
            ``[prompt] compile``, the prompter's backbone is compiled in place (hooks and all, see
            :mod:`promptkit.compile`); the saved adapter is unaffected and the returned prompter
            stays compiled.
        data: a ``DataBundle``.
        backbone: the pre-trained backbone (it is frozen, except the spec's trainable modules).
        hooks: a HookSpec for backbones without a registered one.
        cggm: add the CGGM plug-in over each modality's encoder, prompts and MMGM parts.
        **opts: passed to :func:`~promptkit.train.engine.fit`.
    """
    out_dir = Path(out_dir)
    config = PrompterConfig.from_dict(dict(recipe.prompt.prompter or {}))
    prompter = wrap_for_data(backbone, data, config, hooks)
    built = list(plugins)
    if cggm:
        from ..cggm import CGGM

        built.append(
            CGGM.from_recipe_section(
                prompter.backbone, prompter.spec, recipe.cggm or {}, extra_params=prompter.modality_parameters()
            )
        )
    run_info = {"backbone": recipe.backbone.name, "prompter": config.to_dict(), "eta": recipe.prompt.eta}
    result = fit(
        prompter, data, recipe.prompt, out_dir, mask_fn=eta_mask_fn(data.modalities, recipe.prompt.eta),
        plugins=built, metric_kind=recipe.data.metric, run_info=run_info, **opts,
    )
    prompter.save_pretrained(out_dir / ADAPTER_DIR)
    return prompter, result
