"""LoRA adapter directories: the LoRA tensors and the head alone, through :mod:`promptkit.adapter_files`.

The config holds, beside the common keys (format, version, the backbone's class, its layout
fingerprint before LoRA and the digest of its frozen base weights), the LoRA settings
(``lora``: ``r``, ``lora_alpha``, ``lora_dropout``, ``target_modules``, ``bias``), the head's
module paths (``head``) and the peft version; the weights file is of checkpoint kind
:data:`LORA_KIND`. A single ``lora_adapter.safetensors`` of older promptkit (the same keys in its
meta) still loads, through the same checks.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..adapter_files import (
    AdapterLoadError,
    AdapterType,
    check_frozen_weights,
    copy_tensors,
    read_adapter,
    register_adapter_type,
    save_adapter_files,
)
from ..prompter import MissingModalityPrompter
from .lora_injection import base_state_shapes, inject_exact, is_lora_key, lora_config
from .lora_targets import has_lora, head_paths, inside, spec_of

LORA_KIND = "lora-adapter"
"""The checkpoint kind of a LoRA adapter's weights file."""
ADAPTER_FILE = "lora_adapter.safetensors"
"""The single file older promptkit wrote (``out_dir/lora_adapter.safetensors``), still read."""
ADAPTER_DIR = "lora_adapter"
"""The adapter directory a LoRA method writes in its ``out_dir``."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check(path: Path, config: dict[str, Any]) -> None:
    """The LoRA settings are the ones :func:`inject_lora` takes; the head is a list of module paths."""
    lora = config["lora"]
    for key in ("r", "lora_alpha", "lora_dropout", "target_modules"):
        if key not in lora:
            raise AdapterLoadError(f"{path}: key 'lora' lacks {key!r} (required: r, lora_alpha, lora_dropout, "
                                   "target_modules)")
    r, alpha, dropout, targets = lora["r"], lora["lora_alpha"], lora["lora_dropout"], lora["target_modules"]
    if not isinstance(r, int) or isinstance(r, bool) or r < 1:
        raise AdapterLoadError(f"{path}: key 'lora.r' must be a positive integer, got {r!r}")
    if not _is_number(alpha) or not alpha > 0:
        raise AdapterLoadError(f"{path}: key 'lora.lora_alpha' must be a positive number, got {alpha!r}")
    if not _is_number(dropout) or not 0.0 <= dropout < 1.0:
        raise AdapterLoadError(f"{path}: key 'lora.lora_dropout' must be a number in [0, 1), got {dropout!r}")
    if not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets):
        raise AdapterLoadError(f"{path}: key 'lora.target_modules' must be a non-empty list of module names, "
                               f"got {targets!r}")
    if not all(isinstance(p, str) for p in config["head"]):
        raise AdapterLoadError(f"{path}: key 'head' must be a list of module paths, got {config['head']!r}")


LORA_ADAPTER = register_adapter_type(AdapterType(
    name="lora",
    kind=LORA_KIND,
    label="LoRA adapter",
    loader="promptkit.methods.lora.load_lora_adapter(backbone, path)",
    schema={"lora": dict, "head": list, "peft_version": str},
    check=_check,
    legacy_file=ADAPTER_FILE,
))


def _backbone_and_head(model: nn.Module, hooks: Any) -> tuple[nn.Module, list[str]]:

    if isinstance(model, MissingModalityPrompter):
        return model.backbone, head_paths(model.spec)
    return model, head_paths(spec_of(model, hooks))


def _adapter_keys(backbone: nn.Module, head: Sequence[str]) -> list[str]:
    """The state keys an adapter holds for ``backbone``: its LoRA tensors and the head's state."""
    return [k for k in backbone.state_dict() if is_lora_key(k) or inside(k, head)]


def frozen_base_state(backbone: nn.Module, head: Sequence[str]) -> dict[str, torch.Tensor]:
    """The frozen base weights, by their names before LoRA (``base_layer`` removed; the head and the
    LoRA tensors left out): what the adapter's ``backbone_weights`` digest covers."""
    items = {re.sub(r"\.base_layer(?=\.|$)", "", k): v for k, v in backbone.state_dict().items() if not is_lora_key(k)}
    return {k: v for k, v in items.items() if not inside(k, head)}


def lora_adapter_state(model: nn.Module, hooks: Any = None) -> dict[str, torch.Tensor]:
    """The LoRA tensors and the head's state of a LoRA backbone (or a prompter on one), by backbone key."""
    backbone, head = _backbone_and_head(model, hooks)
    state = backbone.state_dict()
    out = {k: v for k, v in state.items() if is_lora_key(k)}
    if not out:
        raise ValueError(f"this {type(backbone).__name__} holds no LoRA tensors")
    out.update({k: v for k, v in state.items() if inside(k, head) and not is_lora_key(k)})
    return out


def save_lora_adapter(model: nn.Module, directory: str | Path, *, hooks: Any = None) -> Path:
    """Write only the LoRA tensors and the head of ``model`` (a LoRA backbone or a prompter on one)
    to the adapter directory ``directory`` (:func:`promptkit.adapter_files.save_adapter_files`);
    returns it. The config holds the LoRA settings, the head paths and the peft version, and binds
    the adapter to the base backbone's class, layout and frozen weights."""
    import peft

    backbone, head = _backbone_and_head(model, hooks)
    tensors = lora_adapter_state(model, hooks)
    config = {"lora": lora_config(backbone), "head": head, "peft_version": peft.__version__}
    return save_adapter_files(directory, LORA_ADAPTER, tensors, config, backbone=backbone,
                              frozen=frozen_base_state(backbone, head), layout=base_state_shapes(backbone))


def load_lora_adapter(backbone: nn.Module, path: str | Path, *, check_weights: bool = True) -> nn.Module:
    """Inject LoRA into bare ``backbone`` with the adapter's settings and load its tensors; returns it.

    ``path`` is an adapter directory written by :func:`save_lora_adapter`, or the single file (or
    the folder holding ``lora_adapter.safetensors``) older promptkit wrote.

    Raises:
        AdapterLoadError: see :func:`promptkit.adapter_files.read_adapter` (another adapter type, a
            corrupt or edited file, another backbone class or layout); with ``check_weights``,
            other frozen base weights; tensors that do not fit the injected LoRA layers.
        ValueError: ``backbone`` already holds LoRA layers.
    """
    files = read_adapter(path, LORA_ADAPTER, backbone, layout=base_state_shapes(backbone))
    if has_lora(backbone):
        raise ValueError(f"this {type(backbone).__name__} already holds LoRA layers; load the adapter into a bare one")
    head = list(files.config["head"])
    if check_weights:
        check_frozen_weights(files, LORA_ADAPTER, backbone, frozen_base_state(backbone, head))
    cfg = files.config["lora"]
    inject_exact(backbone, cfg["r"], cfg["lora_alpha"], cfg["lora_dropout"], list(cfg["target_modules"]), head, seed=0)
    state = backbone.state_dict()
    copy_tensors(files, {k: state[k] for k in _adapter_keys(backbone, head)})
    return backbone
