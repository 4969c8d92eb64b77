"""The prompt stage: wrap a pre-trained backbone, train the prompts with missing rate eta.

Each training sample gets a missing case re-drawn every epoch by the paper's protocol (with
probability eta one of the incomplete cases uniformly, else complete), from a generator seeded by
``(seed, epoch)``. Validation uses the same protocol with fixed masks, so the selected epoch is the
best one *under missing modalities*; the final figures come from the test split.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import cggm as cggm_plugin  # CGGM looked up at call time (tests replace it)
from ..checkpoint import weights_digest
from ..modalities import ModalitySet
from ..plugins import TrainPlugin
from ..prompter import MissingModalityPrompter, PrompterConfig
from ..recipes import Recipe
from ..seeding import derive_seed, seed_everything
from .distributed import is_main_process, main_process_first
from .engine import fit
from .results import FitResult

ADAPTER_DIR = "adapter"
DEFAULT_NAME = "prompts"
"""The name a direct call records (and seeds the prompts' init from) when it names no method."""


def eta_mask_fn(modalities: Sequence[str], eta: float):
    """``mask_fn(batch, epoch, generator) -> (B, M)`` drawing the paper's training protocol."""
    ms = ModalitySet(modalities)
    ms.sample_masks(0, eta)  # validates eta before any training starts

    def mask_fn(batch: dict[str, torch.Tensor], epoch: int, generator: torch.Generator) -> torch.Tensor:
        return ms.sample_masks(batch["labels"].shape[0], eta, generator)

    return mask_fn


def wrap_for_data(backbone: nn.Module, data: Any, config: PrompterConfig, hooks=None,
                  prompter_cls: type[MissingModalityPrompter] = MissingModalityPrompter,
                  example: dict[str, torch.Tensor] | None = None) -> MissingModalityPrompter:
    """Wrap ``backbone`` in a ``prompter_cls`` with the data's feature sizes and check that its spec
    and the data agree on the modality order (``example``: a batch that measures the widths of hook
    modules that do not say them)."""
    prompter = prompter_cls(backbone, hooks=hooks, config=config, feature_dims=dict(data.feature_dims),
                            example=example)
    if tuple(prompter.modality_set.names) != tuple(data.modalities):
        prompter.unwrap()
        raise ValueError(
            f"the hook spec orders modalities {list(prompter.modality_set.names)}, the data "
            f"({data.description}) {list(data.modalities)}; masks would be misread"
        )
    return prompter


def build_prompter(
    recipe: Recipe,
    data: Any,
    backbone: nn.Module,
    *,
    hooks=None,
    method: str = DEFAULT_NAME,
    config: PrompterConfig | None = None,
    prompter_cls: type[MissingModalityPrompter] = MissingModalityPrompter,
) -> MissingModalityPrompter:
    """Wrap ``backbone`` in a ``prompter_cls`` with ``config`` (default: the recipe's
    ``[prompt.prompter]``), initialised reproducibly.

    The random init is drawn from a generator seeded by ``([prompt] seed, method)``, so a recipe,
    seed and method name give the same prompts through the CLI and the API, whatever ran before. With
    ``init_scale = "data"`` the init is then rescaled on the first training batch
    (:meth:`~promptkit.MissingModalityPrompter.calibrate_init`). The hooks are checked on that
    batch too (:meth:`~promptkit.MissingModalityPrompter.verify_hooks`), before any training.
    """
    if config is None:
        config = PrompterConfig.from_dict(dict(recipe.prompt.prompter or {}))
    train = data.splits["train"]
    device = next(backbone.parameters()).device
    first = {m: x[: min(len(train), 256)].to(device) for m, x in train.features.items()}
    with torch.random.fork_rng(devices=[]):
        seed_everything(derive_seed(int(recipe.prompt.seed), "prompt-init", method))
        example = {m: x[: min(len(x), recipe.prompt.batch_size)] for m, x in first.items()}
        prompter = wrap_for_data(backbone, data, config, hooks, prompter_cls, example=example)
    try:
        prompter.verify_hooks({m: x[: min(len(x), recipe.prompt.batch_size)] for m, x in first.items()})
        if config.init_scale == "data":
            prompter.calibrate_init(first)
    except BaseException:
        prompter.unwrap()
        raise
    return prompter


def param_groups(prompter: MissingModalityPrompter, prompt_lr: float | None) -> list[dict] | None:
    """The prompt tensors at ``prompt_lr``, every other trainable tensor at the stage's lr (None: one lr)."""
    if prompt_lr is None:
        return None
    prompts = {id(p) for p in prompter.prompt_tensors()}
    trainable = [p for p in prompter.parameters() if p.requires_grad]
    groups = [{"params": [p for p in trainable if id(p) in prompts], "lr": float(prompt_lr)},
              {"params": [p for p in trainable if id(p) not in prompts]}]
    return [g for g in groups if g["params"]]


def prompt_tune(
    recipe: Recipe,
    data: Any,
    backbone: nn.Module,
    out_dir: str | Path,
    *,
    hooks=None,
    method: str = DEFAULT_NAME,
    config: PrompterConfig | None = None,
    prompter_cls: type[MissingModalityPrompter] = MissingModalityPrompter,
    plugins: Sequence[TrainPlugin] = (),
    cggm: bool = False,
    **opts: Any,
) -> tuple[MissingModalityPrompter, FitResult]:
    """Train MPLMM prompts (or a control) on ``backbone``; save the adapter to ``out_dir/adapter``.

    Args:
        recipe: ``[prompt]`` gives the stage settings, ``eta``, ``prompt_lr`` and the ``prompter``
            table. With ``[prompt] compile``, the prompter's backbone is compiled in place (hooks
            and all, see :mod:`promptkit.compile`); the saved adapter is unaffected and the
            returned prompter stays compiled.
        data: a ``DataBundle``.
        backbone: the pre-trained backbone (it is frozen, except the spec's trainable modules).
        hooks: a HookSpec for backbones without a registered one.
        method: the name the run records and the prompts' init seed derives from (a method of
            :mod:`promptkit.methods` passes its own).
        config: the prompts to build; default: the recipe's ``[prompt.prompter]``.
        prompter_cls: the wrapper (a subclass for another method on the same hook points).
        cggm: add the CGGM plug-in over each modality's encoder, prompts and MMGM parts.
        **opts: passed to :func:`~promptkit.train.engine.fit`.
    """
    out_dir = Path(out_dir)
    weights = weights_digest(backbone)  # a resumed stage on another pre-trained backbone is refused
    prompter = build_prompter(recipe, data, backbone, hooks=hooks, method=method, config=config,
                              prompter_cls=prompter_cls)
    config = prompter.config
    built = list(plugins)
    try:
        if cggm:
            built.append(
                cggm_plugin.CGGM.from_recipe_section(
                    prompter.backbone, prompter.spec, recipe.cggm or {}, extra_params=prompter.modality_parameters(),
                    task=data.task,
                )
            )
        run_info = {**recipe.backbone.identity(), "backbone_weights": weights, "prompter": config.to_dict(),
                    "eta": recipe.prompt.eta, "method": method}
        if recipe.hooks is not None:
            run_info["hooks"] = recipe.hooks
        result = fit(
            prompter, data, recipe.prompt, out_dir, mask_fn=eta_mask_fn(data.modalities, recipe.prompt.eta),
            params=param_groups(prompter, recipe.prompt.prompt_lr), plugins=built, metric_kind=recipe.data.metric,
            run_info=run_info, **opts,
        )
    except BaseException:  # leave the backbone as it came: no hooks, its own requires_grad flags
        for plugin in built:
            getattr(plugin, "remove", lambda: None)()
        prompter.unwrap()
        raise
    with main_process_first():  # one writer in a distributed run
        if is_main_process():
            prompter.save_pretrained(out_dir / ADAPTER_DIR)
    return prompter, result
