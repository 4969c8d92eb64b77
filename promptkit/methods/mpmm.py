"""MPMM (Lee et al., CVPR 2023): missing-aware prompts, one learned prompt set per missing case.

On the frozen backbone, through the same hook points as MPLMM: each sample's case (which modalities
it has) picks one ``(l_p, d_t)`` token set per type target, prepended to that encoder's input
sequence and trimmed from its output; missing inputs are zero-filled and the head trains, as in the
head-only control. The sets grow as ``2**M - 1`` where MPLMM's prompts grow linearly in M
(:func:`per_case_prompt_parameters`).

Departure from the paper: MPMM's *input-level* variant prepends the prompts to the backbone's input
tokens; here they enter at the spec's type targets (the encoders/fusion inputs), the same places as
MPLMM's missing-type prompts, so the two are compared at equal positions. The *attention-level*
variant (per-case prefixes of every attention module's keys and values) is the method
``"mpmm_attn"`` of :mod:`promptkit.methods.mpmm_attention`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..prompter import MissingModalityPrompter
from ..prompter.io import prompter_adapter_type
from ._prompter_fit import fit_prompter, recipe_prompter_config
from .registry import TrainedMethod, register_method

NAME = "mpmm"

__all__ = ["PerCasePrompter", "PerCaseTypePrompts", "mpmm", "per_case_prompt_parameters"]


class PerCaseTypePrompts(nn.Module):
    """One learned ``(l_p, d_t)`` token set per case and type target, picked by each sample's case.

    Args:
        num_cases: ``2**M - 1`` (every non-empty case, the complete one included).
        target_widths: d_t of each type target, in spec order.
        length: l_p, tokens per target.
        init_std: std of the random init.
    """

    def __init__(self, num_cases: int, target_widths: list[int], length: int = 16, init_std: float = 0.02) -> None:
        super().__init__()
        self.target_widths = list(target_widths)
        self.type_prompts = nn.ParameterList(
            [nn.Parameter(torch.randn(num_cases, length, w) * init_std) for w in target_widths]
        )

    def forward(self, case_ids: torch.Tensor) -> list[torch.Tensor]:
        """``case_ids (B,)`` → one ``(B, l_p, d_t)`` tensor per target."""
        return [p[case_ids] for p in self.type_prompts]


def per_case_prompt_parameters(num_modalities: int, length: int, target_widths: list[int]) -> int:
    """Parameters of per-case prompt sets: one ``(l_p, d_t)`` set per non-empty case."""
    return (2**num_modalities - 1) * length * sum(target_widths)


class PerCasePrompter(MissingModalityPrompter):
    """The wrapper with MPMM's per-case token sets at the type targets instead of MPLMM's
    missing-type prompts (which it does not build the signal prompts for)."""

    type_tokens_need_signal = False
    adapter_type = NAME

    def _build_type_prompts(self) -> nn.Module:
        cfg = self.config
        return PerCaseTypePrompts(len(self.modality_set.cases), self.type_widths, cfg.prompt_length, cfg.init_std)

    def type_tokens(self, missing: torch.Tensor) -> list[torch.Tensor]:
        """One ``(B, l_p, d_t)`` set per type target, the one of each sample's case (``missing`` ``(B, M)``)."""
        return self.type_prompts(self.modality_set.case_ids_from_masks(~missing))


prompter_adapter_type(NAME, "MPMM per-case prompt adapter", "PerCasePrompter.from_pretrained(backbone, path)")


@register_method(NAME, label="MPMM: a prompt set per case", short="MPMM", trains="per-case prompt sets and the head")
def mpmm(recipe: Any, data: Any, backbone_file: str | Path, out_dir: str | Path, *, hooks: Any = None,
         **opts: Any) -> TrainedMethod:
    """Per-case prompt sets (every other prompt type off) trained by the prompt stage at
    ``[prompt] eta`` with the recipe's prompt length and learning rates."""
    config = dataclasses.replace(recipe_prompter_config(recipe), generative=False, signal=False, type=True)
    done = fit_prompter(NAME, recipe, data, backbone_file, out_dir, config=config, prompter_cls=PerCasePrompter,
                        hooks=hooks, **opts)
    done.info["prompt_sets"] = len(done.modules["prompter"].modality_set.cases)
    return done
