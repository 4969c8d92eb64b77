"""The controls a prompt result is compared with, trained on the same data, eta and masks.

- ``head_only``: every prompt type off; the same trainable head as the prompts train, on
  zero-filled inputs. What retraining the head alone buys - the control the prompts must beat.
- ``full_finetune``: every prompt type off and every backbone weight trained on zero-filled
  inputs at eta: the paper's modality-dropout baseline (MD), with 10-100x the trainable weights.

Both are prompters (:class:`~promptkit.MissingModalityPrompter`, full fine-tuning a subclass that
trains the backbone), so they run through exactly the same zero-fill, training loop and
evaluation as the prompts.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..prompter import MissingModalityPrompter, PrompterConfig
from ..prompter.io import prompter_adapter_type
from ._prompter_fit import fit_prompter, recipe_prompter_config
from .registry import TrainedMethod, register_method

HEAD_ONLY = "head_only"
FULL_FINETUNE = "full_finetune"


def head_only_config(recipe: Any) -> PrompterConfig:
    """The recipe's prompter config with every prompt type off (the head, and the spec's
    trainable modules, still train)."""
    return dataclasses.replace(recipe_prompter_config(recipe), generative=False, signal=False, type=False)


class FullFineTunePrompter(MissingModalityPrompter):
    """A prompter whose whole backbone trains: with every prompt type off, full fine-tuning at the
    training missing rate. Its adapter holds the whole backbone."""

    trains_backbone = True
    adapter_type = FULL_FINETUNE


prompter_adapter_type(FULL_FINETUNE, "full fine-tuning adapter", "FullFineTunePrompter.from_pretrained(backbone, path)")


@register_method(HEAD_ONLY, label="head only (control)", short="head only", trains="the head", rank=2)
def head_only(recipe: Any, data: Any, backbone_file: str | Path, out_dir: str | Path, *, hooks: Any = None,
              **opts: Any) -> TrainedMethod:
    """Every prompt type off; the head trains on zero-filled inputs at ``[prompt] eta``."""
    return fit_prompter(HEAD_ONLY, recipe, data, backbone_file, out_dir, config=head_only_config(recipe), hooks=hooks,
                        **opts)


@register_method(FULL_FINETUNE, label="full fine-tuning (MD)", short="full FT", trains="every backbone weight",
                 rank=3)
def full_finetune(recipe: Any, data: Any, backbone_file: str | Path, out_dir: str | Path, *, hooks: Any = None,
                  **opts: Any) -> TrainedMethod:
    """Every backbone weight trains on zero-filled inputs at ``[prompt] eta``."""
    return fit_prompter(FULL_FINETUNE, recipe, data, backbone_file, out_dir, config=head_only_config(recipe),
                        prompter_cls=FullFineTunePrompter, hooks=hooks, **opts)
