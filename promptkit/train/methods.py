"""The controls a prompt result is compared with, as prompter configurations.

A claim "the prompts help" needs the right controls, trained on the same data with the same
training missing rate (eta) and evaluated on the same fixed masks:

- ``head_only``: every prompt type off; the same trainable head as the prompts train, on
  zero-filled inputs. What retraining the head alone buys - the control the prompts must beat.
- ``full_finetune``: every prompt type off and every backbone weight trained on zero-filled
  inputs at eta: the paper's modality-dropout baseline (MD), with 10-100x the trainable weights.

Both are ordinary :class:`~promptkit.MissingModalityPrompter` s, so they run through exactly the
same zero-fill, training loop and evaluation as the prompts.
"""

from __future__ import annotations

import dataclasses

from ..prompter import PrompterConfig

PROMPTS = "mplmm"
CONTROLS: dict[str, dict[str, bool]] = {
    "head_only": {"generative": False, "signal": False, "type": False},
    "full_finetune": {"generative": False, "signal": False, "type": False, "train_backbone": True},
}
BASELINE_CONFIGS: dict[str, dict[str, object]] = {  # baselines that are prompter configurations too
    "mpmm": {"generative": False, "signal": False, "type": True, "type_source": "per_case"},
}
LABELS: dict[str, str] = {
    "zero_filled": "zero-filled frozen backbone",
    PROMPTS: "MPLMM prompts",
    "head_only": "head only (control)",
    "full_finetune": "full fine-tuning (MD)",
    "ms_zero": "MS: zero substitution",
    "ms_mean": "MS: training-mean substitution",
    "md_zero": "MD: modality dropout, zeros",
    "md_mean": "MD: modality dropout, training means",
    "lb": "LB: a model per case",
    "lora": "LoRA (peft) + head",
    "lora_mplmm": "LoRA + MPLMM prompts",
    "mpmm": "MPMM: a prompt set per case",
}


def method_config(method: str, prompts: PrompterConfig) -> PrompterConfig:
    """The prompter config of ``method``: the recipe's own for ``"mplmm"``, a control otherwise."""
    if method == PROMPTS:
        return prompts
    overrides = CONTROLS.get(method, BASELINE_CONFIGS.get(method))
    if overrides is None:
        raise KeyError(f"unknown method {method!r}; known: {[PROMPTS, *CONTROLS, *BASELINE_CONFIGS]}")
    return dataclasses.replace(prompts, **overrides)
