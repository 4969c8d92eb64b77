"""Attention-prompt adapter directories: the prefixes and the head alone, through :mod:`promptkit.adapter_files`.

The config holds, beside the common keys (format, version, the backbone's class, layout
fingerprint and frozen-weights digest), the prefix length (``length``), the modality order of the
case ids (``modalities``), the prefixed attention modules in order (``attention``) and the head's
module paths (``head``); the weights (``key.<i>``, ``value.<i>``: ``(2**M - 1, L, E)`` per
attention module; ``head.<backbone key>``) are a checkpoint of kind :data:`ATTN_KIND`. A single
``mpmm_attn_adapter.safetensors`` of older promptkit (the same keys in its meta) still loads,
through the same checks.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from .attention_prefix import AttentionPrefixPrompts

ATTN_KIND = "mpmm-attn-adapter"
"""The checkpoint kind of an attention-prompt adapter's weights file."""
ADAPTER_FILE = "mpmm_attn_adapter.safetensors"
"""The single file older promptkit wrote (``out_dir/mpmm_attn_adapter.safetensors``), still read."""
ADAPTER_DIR = "mpmm_attn_adapter"
"""The adapter directory the ``mpmm_attn`` method writes in its ``out_dir``."""


def _check(path: Path, config: dict[str, Any]) -> None:
    """A positive prefix length; the modalities, attention modules and head are lists of names."""
    length = config["length"]
    if isinstance(length, bool) or length < 1:
        raise AdapterLoadError(f"{path}: key 'length' must be a positive integer, got {length!r}")
    for key in ("modalities", "attention", "head"):
        if not all(isinstance(v, str) for v in config[key]):
            raise AdapterLoadError(f"{path}: key {key!r} must be a list of names, got {config[key]!r}")


ATTN_ADAPTER = register_adapter_type(AdapterType(
    name="mpmm_attn",
    kind=ATTN_KIND,
    label="mpmm_attn adapter",
    loader="promptkit.methods.mpmm_attention.load_attention_prompts(backbone, path)",
    schema={"length": int, "modalities": list, "attention": list, "head": list},
    check=_check,
    legacy_file=ADAPTER_FILE,
))


def save_attention_prompts(model: AttentionPrefixPrompts, directory: str | Path) -> Path:
    """Write only ``model``'s prefixes and head to the adapter directory ``directory``; returns it."""
    config = {
        "length": model.length,
        "modalities": list(model.modality_set.names),
        "attention": list(model.attention_names),
        "head": list(model.head),
    }
    return save_adapter_files(directory, ATTN_ADAPTER, model.adapter_state(), config, backbone=model.backbone,
                              frozen=model.frozen_state())


def read_attention_prompts(cls: type[AttentionPrefixPrompts], backbone: nn.Module, path: str | Path,
                           hooks: Any = None, *, check_weights: bool = True) -> AttentionPrefixPrompts:
    """A ``cls`` model on the bare ``backbone`` with the prefixes and head of the adapter at ``path``.

    Raises:
        AdapterLoadError: see :func:`promptkit.adapter_files.read_adapter` (another adapter type, a
            corrupt or edited file, another backbone class or layout); prefixes for other attention
            modules or another modality order than this backbone's; with ``check_weights``, other
            frozen weights; tensors that do not fit.
    """
    files = read_adapter(path, ATTN_ADAPTER, backbone)
    config = files.config
    model = cls(backbone, hooks, length=config["length"], init_std=0.0)
    try:
        names = list(model.modality_set.names)
        if model.attention_names != config["attention"] or names != config["modalities"]:
            raise AdapterLoadError(
                f"{files.config_path}: keys 'attention' and 'modalities' prefix {config['attention']} for "
                f"{config['modalities']}; this backbone has {model.attention_names} for {names}"
            )
        if check_weights:
            check_frozen_weights(files, ATTN_ADAPTER, backbone, model.frozen_state())
        copy_tensors(files, model.adapter_state())
    except BaseException:
        model.remove()
        raise
    return model
