"""The adapter directory: ``promptkit_config.json`` beside ``adapter_model.safetensors``, written and read.

:func:`save_adapter_files` writes the weights (a checkpoint whose meta carries a copy of the
config) and then the config; :func:`read_adapter` refuses, before any tensor is copied and naming
the file and the key, a config that fails the schema, another adapter type, an older format,
another backbone class or layout, corrupt weights and a config that differs from the copy in the
weights. A type's single-file adapter of older promptkit (``legacy_file``: a checkpoint whose
meta is the config) is read through the same checks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__
from .._atomic import atomic_write_bytes
from ..checkpoint import (
    CheckpointError,
    fingerprint,
    load_checkpoint,
    save_checkpoint,
    state_digest,
)
from .adapter_type import (
    COMMON_SCHEMA,
    UNTYPED,
    AdapterLoadError,
    AdapterType,
    registered_type,
)
from .config import canonical, config_differences, first_differences, validate_config

CONFIG_NAME = "promptkit_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
FORMAT = "promptkit-adapter/2"
LEGACY_FORMATS = ("promptkit-adapter/1",)
"""Formats older promptkit wrote, refused with a message that says so."""


def save_adapter_files(
    directory: str | Path,
    adapter_type: AdapterType,
    tensors: Mapping[str, torch.Tensor],
    config: Mapping[str, Any],
    *,
    backbone: nn.Module,
    frozen: Mapping[str, torch.Tensor],
    layout: Mapping[str, Any] | nn.Module | None = None,
) -> Path:
    """Write ``tensors`` (with a copy of the config in their meta), then the JSON config; returns ``directory``.

    Args:
        config: the type's own keys, in the order they are saved.
        backbone: the frozen backbone the adapter belongs to (its class is recorded).
        frozen: its state the adapter does not replace, digested into ``backbone_weights``.
        layout: names and shapes fingerprinted into ``backbone_fingerprint``; None: ``backbone``'s.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"cannot save an adapter to {directory}: it is a file, expected a directory")
    if directory.suffix == ".safetensors":
        raise ValueError(
            f"cannot save an adapter to {directory}: an adapter is a directory ({CONFIG_NAME} + {WEIGHTS_NAME}), "
            "not a .safetensors file; pass a directory path"
        )
    directory.mkdir(parents=True, exist_ok=True)
    full = {
        "format": FORMAT,
        "adapter_type": adapter_type.name,
        "promptkit_version": __version__,
        "backbone_class": type(backbone).__name__,
        "backbone_fingerprint": fingerprint(backbone if layout is None else layout),
        "backbone_weights": state_digest(frozen),
        **config,
    }
    full = json.loads(canonical(full))  # as it will read back (tuples become lists)
    save_checkpoint(directory / WEIGHTS_NAME, dict(tensors), {"format": FORMAT, "config": full}, kind=adapter_type.kind)
    atomic_write_bytes(directory / CONFIG_NAME, json.dumps(full, indent=2).encode())
    return directory


# --- loading ----------------------------------------------------------------------------------
@dataclass
class AdapterFiles:
    """An adapter as read and checked by :func:`read_adapter`: its config and tensors (CPU)."""

    config: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    config_path: Path
    weights_path: Path


def _load_weights(path: Path, adapter_type: AdapterType) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    try:
        return load_checkpoint(path, kind=adapter_type.kind)
    except CheckpointError as e:
        raise AdapterLoadError(str(e)) from None


def _check_type(cfg_path: Path, config: dict[str, Any], adapter_type: AdapterType) -> None:
    name = config.get("adapter_type", UNTYPED)
    if name == adapter_type.name:
        return
    other = registered_type(name)
    what = f"a {other.label} ({name!r}); load it with {other.loader}" if other else f"an adapter of type {name!r}"
    raise AdapterLoadError(
        f"{cfg_path} holds {what}, not a {adapter_type.label} (adapter_type {adapter_type.name!r})"
    )


def _check_backbone(where: str, config: Mapping[str, Any], backbone: nn.Module, adapter_type: AdapterType,
                    layout: Mapping[str, Any] | nn.Module | None) -> None:
    """Refuse another backbone class, or the same class with other parameter names/shapes."""
    cls = type(backbone).__name__
    if config["backbone_class"] != cls:
        raise AdapterLoadError(f"{adapter_type.label} {where} was saved for a {config['backbone_class']}, not a {cls}")
    got = fingerprint(backbone if layout is None else layout)
    if config["backbone_fingerprint"] != got:
        raise AdapterLoadError(
            f"{adapter_type.label} {where} was saved for a {cls} with other parameter names/shapes (layout "
            f"fingerprint {config['backbone_fingerprint']}, this one's {got}): it belongs to another backbone "
            "configuration or other feature sizes; rebuild the backbone with the configuration it was saved for"
        )


def _check_copy(cfg_path: Path, weights_path: Path, config: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    """Refuse a config that is not the one the weights were saved with."""
    saved = meta.get("config")
    if saved is None:
        raise AdapterLoadError(
            f"{cfg_path} does not match the weights {weights_path}: the weights carry no copy of the config "
            f"(meta key 'config', present in every {FORMAT} adapter); they were written by other software or re-saved"
        )
    if canonical(config) != canonical(saved):
        diffs = config_differences(config, saved) or ["its canonical JSON differs"]
        raise AdapterLoadError(
            f"{cfg_path} does not match the weights {weights_path}: {first_differences(diffs)}. The config was "
            "edited after saving, or the two files come from different saves; save the adapter again"
        )


def _read_legacy(path: Path, adapter_type: AdapterType, backbone: nn.Module,
                 layout: Mapping[str, Any] | nn.Module | None) -> AdapterFiles:
    """A single-file adapter of older promptkit: a checkpoint whose meta is the config."""
    tensors, meta = _load_weights(path, adapter_type)
    if "config" in meta and "format" in meta:
        raise AdapterLoadError(f"{path} is the weights file of the adapter directory {path.parent}; pass the directory")
    validate_config(path, meta, {**{k: COMMON_SCHEMA[k] for k in ("backbone_class", "backbone_fingerprint")},
                                 **adapter_type.schema})
    if adapter_type.check is not None:
        adapter_type.check(path, meta)
    _check_backbone(str(path), meta, backbone, adapter_type, layout)
    return AdapterFiles(meta, tensors, path, path)


def read_adapter(path: str | Path, adapter_type: AdapterType, backbone: nn.Module, *,
                 layout: Mapping[str, Any] | nn.Module | None = None) -> AdapterFiles:
    """Read the adapter directory ``path`` of ``adapter_type`` for ``backbone``, every file check done.

    Args:
        layout: the names and shapes the saved fingerprint covers; None: ``backbone``'s.

    Raises:
        AdapterLoadError: a missing or misnamed path; a config that fails the schema, is of another
            adapter type or format, or does not match the weights; another backbone class or
            layout; corrupt or edited weights.
    """
    directory = Path(path)
    legacy = adapter_type.legacy_file
    if legacy and (directory.is_file() or (directory / legacy).is_file() and not (directory / CONFIG_NAME).exists()):
        return _read_legacy(directory if directory.is_file() else directory / legacy, adapter_type, backbone, layout)
    if not directory.exists():
        raise AdapterLoadError(f"adapter directory {directory} does not exist")
    if not directory.is_dir():
        raise AdapterLoadError(
            f"{directory} is a file, not an adapter directory (expected a directory holding {CONFIG_NAME} "
            f"and {WEIGHTS_NAME})"
        )
    cfg_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    for p in (cfg_path, weights_path):
        if p.is_dir():
            raise AdapterLoadError(f"{p} is a directory, expected a file: not a promptkit adapter directory")
        if not p.is_file():
            raise AdapterLoadError(f"{p} does not exist: not a promptkit adapter directory")
    try:
        config = json.loads(cfg_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AdapterLoadError(f"{cfg_path} is not valid JSON: {e}") from None
    if isinstance(config, dict):
        _check_type(cfg_path, config, adapter_type)
    validate_config(cfg_path, config, adapter_type.required)
    if adapter_type.check is not None:
        adapter_type.check(cfg_path, config)
    if config["format"] in LEGACY_FORMATS:
        raise AdapterLoadError(
            f"{cfg_path} has format {config['format']!r}, written by an older promptkit, which this promptkit no "
            "longer loads (its config is not bound to its weights, and their checksum does not cover the header): "
            f"train the prompts again with this promptkit to write format {FORMAT!r}"
        )
    if config["format"] != FORMAT:
        raise AdapterLoadError(f"{cfg_path} has format {config['format']!r}, expected {FORMAT!r}")
    _check_backbone(f"in {directory}", config, backbone, adapter_type, layout)
    tensors, meta = _load_weights(weights_path, adapter_type)
    _check_copy(cfg_path, weights_path, config, meta)
    return AdapterFiles(config, tensors, cfg_path, weights_path)

