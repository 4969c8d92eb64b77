"""MPLMM (Guo, Jin, Zhao, ACL 2024): generative prompts with MMGM, missing-signal and missing-type
prompts on the frozen backbone, as the recipe's ``[prompt.prompter]`` configures them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._prompter_fit import fit_prompter, recipe_prompter_config
from .registry import TrainedMethod, register_method

NAME = "mplmm"


@register_method(NAME, label="MPLMM prompts", short="prompts", trains="prompts, MMGM and the head",
                 stage_dir="prompt", cggm=True, rank=1, default=True)
def mplmm(recipe: Any, data: Any, backbone_file: str | Path, out_dir: str | Path, *, hooks: Any = None,
          **opts: Any) -> TrainedMethod:
    """The recipe's prompts, trained by the prompt stage at ``[prompt] eta``."""
    return fit_prompter(NAME, recipe, data, backbone_file, out_dir, config=recipe_prompter_config(recipe), hooks=hooks,
                        **opts)
