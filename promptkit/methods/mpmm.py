"""MPMM (Lee et al., CVPR 2023): missing-aware prompts, one learned prompt set per missing case.

On the frozen backbone, through the same hook points as MPLMM: each sample's case (which modalities
it has) picks one ``(l_p, d_t)`` token set per type target, prepended to that encoder's input
sequence and trimmed from its output; missing inputs are zero-filled and the head trains, as in the
head-only control. The sets grow as ``2**M - 1`` where MPLMM's prompts grow linearly in M
(:func:`promptkit.prompter.per_case_prompt_parameters`).

Departure from the paper: MPMM's *input-level* variant prepends the prompts to the backbone's input
tokens; here they enter at the spec's type targets (the encoders/fusion inputs), the same places as
MPLMM's missing-type prompts, so the two are compared at equal positions. The *attention-level*
variant (per-case prefixes of every attention module's keys and values) is the method
``"mpmm_attn"`` of :mod:`promptkit.methods.mpmm_attention`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import TrainedMethod, register_method


@register_method("mpmm")
def mpmm(recipe: Any, data: Any, backbone_file: str | Path, out_dir: str | Path, *, hooks: Any = None,
         **opts: Any) -> TrainedMethod:
    """Per-case prompt sets (``PrompterConfig(type_source="per_case")``, every other prompt type off)
    trained by the prompt stage at ``[prompt] eta`` with the recipe's prompt length and learning rates."""
    from ..backbone_files import load_backbone
    from ..evaluation.protocol import prompted_forward
    from ..train.device import resolve_device
    from ..train.prompt_stage import prompt_tune

    opts.setdefault("evaluate_test", False)  # the protocol reads the test split, once
    backbone = load_backbone(backbone_file, device=resolve_device(opts.get("device")), recipe=recipe)
    model, result = prompt_tune(recipe, data, backbone, Path(out_dir),
                                hooks=hooks if hooks is not None else recipe.hook_spec(), method="mpmm", **opts)
    model.eval()
    summary = model.trainable_summary()
    return TrainedMethod(
        name="mpmm", forward=prompted_forward(model), trainable_params=int(summary["trainable_params"]),
        modules={"prompter": model},
        info={"best_epoch": result.best_epoch, "counts": {"prompts": int(summary["prompt_params"])},
              "prompt_sets": len(model.modality_set.cases)},
    )
