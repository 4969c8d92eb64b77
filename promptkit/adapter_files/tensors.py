"""The adapter's tensors against the model built for them: frozen weights, names and shapes, the copy."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ..checkpoint import state_digest
from .adapter_type import AdapterLoadError, AdapterType
from .directory import AdapterFiles


def check_frozen_weights(files: AdapterFiles, adapter_type: AdapterType, backbone: nn.Module,
                         frozen: Mapping[str, torch.Tensor]) -> None:
    """Refuse a ``backbone`` whose ``frozen`` state (what the adapter does not replace) is not the
    one the adapter was trained on. A config without ``backbone_weights`` (a prompter adapter of
    older promptkit) is not checked."""
    saved = files.config.get("backbone_weights")
    if saved is None:
        return
    got = state_digest(frozen)
    if saved != got:
        raise AdapterLoadError(
            f"{adapter_type.label} {files.config_path} was trained on other pre-trained weights of this "
            f"{type(backbone).__name__} (frozen weights digest {saved}, this one's {got}); load the backbone it was "
            "trained on, or pass check_weights=False"
        )


def check_tensors(files: AdapterFiles, targets: Mapping[str, torch.Tensor]) -> None:
    """Refuse adapter tensors that are not exactly ``targets`` (name -> the model's tensor) in names
    and shapes, naming the missing, extra or misshapen ones."""
    tensors, where = files.tensors, files.weights_path
    lacking = sorted(set(targets) - set(tensors))
    extra = sorted(set(tensors) - set(targets))
    if lacking or extra:
        raise AdapterLoadError(f"{where}: missing tensors {lacking[:5]}, unexpected tensors {extra[:5]}")
    for name, target in targets.items():
        if tensors[name].shape != target.shape:
            raise AdapterLoadError(
                f"{where}: tensor {name!r} has shape {tuple(tensors[name].shape)}, expected {tuple(target.shape)}"
            )


def copy_tensors(files: AdapterFiles, targets: Mapping[str, torch.Tensor]) -> None:
    """Copy the adapter's tensors into ``targets`` after :func:`check_tensors`."""
    check_tensors(files, targets)
    with torch.no_grad():
        for name, target in targets.items():
            target.copy_(files.tensors[name])
