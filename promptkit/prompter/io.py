"""Adapter files: ``promptkit_config.json`` + ``adapter_model.safetensors`` (adapter weights only).

The JSON holds the prompter config, the hook spec, the backbone class, a fingerprint of the
backbone's parameter names and shapes and the promptkit version. The weights file is a promptkit
checkpoint (kind ``"adapter"``, see :mod:`promptkit.checkpoint`), so a truncated or altered file is
refused by its own checksum. Loading checks all of this before any tensor is copied; nothing is
ever unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from .._atomic import atomic_write_bytes
from ..checkpoint import CheckpointError, fingerprint, load_checkpoint, save_checkpoint
from ..hookspec import HookSpec
from .config import PrompterConfig

CONFIG_NAME = "promptkit_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
FORMAT = "promptkit-adapter/1"


class AdapterLoadError(ValueError):
    """An adapter directory that cannot be loaded onto the given backbone."""


def save_adapter(prompter, directory: Path) -> None:
    from .. import __version__

    directory.mkdir(parents=True, exist_ok=True)
    save_checkpoint(directory / WEIGHTS_NAME, prompter.adapter_state_dict(), {"format": FORMAT}, kind="adapter")
    config = {
        "format": FORMAT,
        "promptkit_version": __version__,
        "backbone_class": type(prompter.backbone).__name__,
        "backbone_fingerprint": fingerprint(prompter.backbone),
        "prompter_config": prompter.config.to_dict(),
        "hook_spec": prompter.spec.to_dict(),
        "feature_dims": prompter.feature_dims,
    }
    atomic_write_bytes(directory / CONFIG_NAME, json.dumps(config, indent=2).encode())


def load_adapter(cls, backbone: nn.Module, directory: Path):
    cfg_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    for p in (cfg_path, weights_path):
        if not p.is_file():
            raise AdapterLoadError(f"{p} does not exist: not a promptkit adapter directory")
    try:
        config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise AdapterLoadError(f"{cfg_path} is not valid JSON: {e}") from None
    if config.get("format") != FORMAT:
        raise AdapterLoadError(f"{cfg_path} has format {config.get('format')!r}, expected {FORMAT!r}")
    if config["backbone_class"] != type(backbone).__name__:
        raise AdapterLoadError(
            f"adapter in {directory} was saved for a {config['backbone_class']}, not a {type(backbone).__name__}"
        )
    if config["backbone_fingerprint"] != fingerprint(backbone):
        raise AdapterLoadError(
            f"adapter in {directory} was saved for a {config['backbone_class']} with other parameter names/shapes "
            "(a different configuration); rebuild the backbone with the configuration it was saved for"
        )
    try:
        tensors, _ = load_checkpoint(weights_path, kind="adapter")
    except CheckpointError as e:
        raise AdapterLoadError(str(e)) from None

    prompter = cls(
        backbone,
        hooks=HookSpec.from_dict(config["hook_spec"]),
        config=PrompterConfig.from_dict(config["prompter_config"]),
        feature_dims=config["feature_dims"],
    )
    expected = prompter.adapter_state_dict()
    lacking = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if lacking or extra:
        raise AdapterLoadError(f"{weights_path}: missing tensors {lacking[:5]}, unexpected tensors {extra[:5]}")
    with torch.no_grad():
        for name, target in expected.items():
            if tensors[name].shape != target.shape:
                raise AdapterLoadError(
                    f"{weights_path}: tensor {name!r} has shape {tuple(tensors[name].shape)}, "
                    f"expected {tuple(target.shape)}"
                )
            target.copy_(tensors[name])
    return prompter
