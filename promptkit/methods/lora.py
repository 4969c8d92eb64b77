"""LoRA through ``peft`` on the frozen backbone, alone or with the MPLMM prompts.

Beyond the paper: the standard parameter-efficient alternative to prompts. Low-rank adapters are
injected (``peft.inject_adapter_in_model``, :mod:`.lora_injection`) into the backbone's linear and
pointwise-convolution layers (which ones: :mod:`.lora_targets`); the base weights stay
bit-identical and frozen, and only the ``lora_`` tensors train, together with the spec's trainable
head (trained fully, as in the head-only control).

Two methods are registered:

- ``lora``: LoRA + the head, every prompt type off, zero substitution of missing inputs, trained
  at the recipe's ``[prompt] eta`` with the prompt-stage settings (the head-only control's loop,
  masks and evaluation, with the LoRA tensors trained too);
- ``lora_mplmm``: LoRA + the recipe's MPLMM prompts, trained the same way.

Both train through :func:`promptkit.train.prompt_stage.prompt_tune`: the LoRA tensors join the
hook spec's ``trainable`` modules (each adapted layer's ``lora_A``/``lora_B``), so the prompter
leaves them trainable when it freezes the backbone, the optimizer holds them, the best epoch's
weights restore them and the stage's adapter directory holds them. The LoRA tensors and the head
are also written alone, as an adapter directory of type ``"lora"`` (:mod:`.lora_files`:
:func:`save_lora_adapter`, :func:`load_lora_adapter`). Every name of those modules is importable
from here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from ..backbone_files import load_backbone
from ..evaluation.protocol import prompted_forward
from ..seeding import derive_seed
from ..train.device import resolve_device
from ..train.distributed import is_main_process, main_process_first
from ..train.prompt_stage import prompt_tune
from . import controls, mplmm
from ._prompter_fit import method_hooks, recipe_prompter_config
from .lora_files import (
    ADAPTER_DIR,
    ADAPTER_FILE,
    LORA_ADAPTER,
    LORA_KIND,
    load_lora_adapter,
    lora_adapter_state,
    save_lora_adapter,
)
from .lora_injection import (
    ADAPTER_NAME,
    base_state_shapes,
    inject_lora,
    is_lora_key,
    lora_config,
    lora_modules,
    lora_parameters,
)
from .lora_targets import (
    LORA_PARTS,
    has_lora,
    head_paths,
    inside,
    lora_target_modules,
    peft_can_adapt,
    spec_of,
)
from .registry import TrainedMethod, register_method

__all__ = [
    "ADAPTER_DIR",
    "ADAPTER_FILE",
    "ADAPTER_NAME",
    "LORA_ADAPTER",
    "LORA_KIND",
    "base_state_shapes",
    "has_lora",
    "inject_lora",
    "load_lora_adapter",
    "lora_adapter_state",
    "lora_config",
    "lora_method",
    "lora_modules",
    "lora_mplmm_method",
    "lora_parameters",
    "lora_target_modules",
    "lora_training_spec",
    "peft_can_adapt",
    "save_lora_adapter",
    "train_lora",
]


# --- the methods ------------------------------------------------------------------------------------
def lora_training_spec(backbone: nn.Module, spec: Any) -> Any:
    """``spec`` with each LoRA layer's ``lora_A`` and ``lora_B`` added to its ``trainable`` modules, so
    a prompter on the LoRA backbone trains (and saves) them with the head."""
    extra = [f"{name}.{part}" for name in lora_modules(backbone) for part in LORA_PARTS]
    if not extra:
        raise ValueError(f"this {type(backbone).__name__} holds no LoRA layers")
    return dataclasses.replace(spec, trainable=[*spec.trainable, *[p for p in extra if p not in spec.trainable]])


def _count(params: Any) -> int:
    return sum(p.numel() for p in params)


def train_lora(
    recipe: Any,
    data: Any,
    backbone_file: str | Path,
    out_dir: str | Path,
    *,
    prompts: bool,
    name: str,
    hooks: Any = None,
    r: int = 8,
    alpha: int = 16,
    lora_dropout: float = 0.0,
    target_modules: Sequence[str] | None = None,
    **opts: Any,
) -> TrainedMethod:
    """LoRA on the pre-trained backbone in ``backbone_file``, trained by the prompt stage at the
    recipe's ``[prompt] eta``: with the head alone (``prompts=False``, the head-only control's
    prompter: zero substitution) or with the recipe's MPLMM prompts (``prompts=True``).

    Writes the adapter directory ``out_dir/lora_adapter`` (LoRA + head only, :func:`save_lora_adapter`)
    beside the prompt stage's run files and ``out_dir/adapter``. ``opts`` go to
    :func:`~promptkit.train.prompt_stage.prompt_tune` (and on to ``fit``: ``device``, ``resume``,
    ``overwrite``, ``progress``, ``evaluate_test``, ...).
    """

    out_dir = Path(out_dir)
    opts.setdefault("evaluate_test", False)  # the protocol reads the test split, once
    backbone = load_backbone(backbone_file, device=resolve_device(opts.get("device")), recipe=recipe)
    spec = spec_of(backbone, method_hooks(recipe, backbone, hooks))
    inject_lora(backbone, r=r, alpha=alpha, dropout=lora_dropout, target_modules=target_modules, hooks=spec,
                seed=derive_seed(int(recipe.prompt.seed), "lora-init", name))
    prompter, result = prompt_tune(recipe, data, backbone, out_dir, hooks=lora_training_spec(backbone, spec),
                                   method=mplmm.NAME if prompts else controls.HEAD_ONLY,
                                   config=recipe_prompter_config(recipe) if prompts else controls.head_only_config(recipe),
                                   **opts)
    prompter.eval()
    path = out_dir / ADAPTER_DIR
    with main_process_first():
        if is_main_process():
            save_lora_adapter(prompter, path)
    head = head_paths(spec)
    lora_n = _count(lora_parameters(backbone).values())
    head_n = _count(p for n, p in backbone.named_parameters() if inside(n, head) and not is_lora_key(n))
    trainable = _count(p for p in prompter.parameters() if p.requires_grad)
    counts = prompter.prompt_parameters()
    return TrainedMethod(
        name=name,
        forward=prompted_forward(prompter),
        trainable_params=trainable,
        modules={"prompter": prompter},
        info={
            "best_epoch": result.best_epoch,
            "best_valid": result.best_valid,
            "eta": recipe.prompt.eta,
            "lora": lora_config(backbone),
            "adapter": str(path),
            "counts": {"lora": lora_n, "head": head_n, "prompts": trainable - lora_n - head_n,
                       "prompt_tensors": counts["generative"] + counts["signal"] + counts["type"]},
        },
    )


@register_method("lora", label="LoRA (peft) + head", short="LoRA", trains="LoRA matrices and the head")
def lora_method(recipe: Any, data: Any, backbone_file: str | Path, out_dir: str | Path, *, hooks: Any = None,
                **opts: Any) -> TrainedMethod:
    """LoRA + the trainable head, every prompt type off, missing inputs zero-filled, trained at eta."""
    return train_lora(recipe, data, backbone_file, out_dir, prompts=False, name="lora", hooks=hooks, **opts)


@register_method("lora_mplmm", label="LoRA + MPLMM prompts", short="LoRA+prompts", trains="LoRA matrices, prompts, MMGM and the head")
def lora_mplmm_method(recipe: Any, data: Any, backbone_file: str | Path, out_dir: str | Path, *, hooks: Any = None,
                      **opts: Any) -> TrainedMethod:
    """LoRA + the recipe's MPLMM prompts (and the head), trained at eta."""
    return train_lora(recipe, data, backbone_file, out_dir, prompts=True, name="lora_mplmm", hooks=hooks, **opts)
