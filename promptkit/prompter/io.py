"""The prompter's adapter: its type and config keys, saved and loaded through :mod:`promptkit.adapter_files`.

The config holds, beside the common keys (format, version, backbone binding), the prompter config,
the hook spec and the feature sizes; the weights are :meth:`MissingModalityPrompter.adapter_state_dict`
(prompts, MMGM, the spec's trainable modules). A hook spec saved with an output function records
only its name; the caller gives the function back (:func:`promptkit.adapter_files.resolve_hook_spec`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..adapter_files import (
    AdapterLoadError,
    AdapterType,
    check_frozen_weights,
    check_tensors,
    copy_tensors,
    read_adapter,
    register_adapter_type,
    resolve_hook_spec,
    save_adapter_files,
)
from ..hookspec import HookSpec
from .config import PrompterConfig


def _check(path: Path, config: dict[str, Any]) -> None:
    """The feature sizes are positive integers; the hook spec names each modality's argument."""
    for m, d in config["feature_dims"].items():
        if not isinstance(d, int) or isinstance(d, bool) or d < 1:
            raise AdapterLoadError(f"{path}: key 'feature_dims.{m}' must be a positive integer, got {d!r}")
    features = config["hook_spec"].get("features")
    if not isinstance(features, dict) or not features or not all(isinstance(v, str) for v in features.values()):
        raise AdapterLoadError(
            f"{path}: key 'hook_spec.features' must be a non-empty JSON object of modality -> argument name, "
            f"got {features!r}"
        )


PROMPTER_ADAPTER = register_adapter_type(AdapterType(
    name="prompter",
    kind="adapter",
    label="prompter adapter",
    loader="MissingModalityPrompter.from_pretrained(backbone, path)",
    schema={"prompter_config": dict, "hook_spec": dict, "feature_dims": dict},
    check=_check,
))


def _frozen_state(prompter) -> dict[str, torch.Tensor]:
    """The backbone's state that the adapter does not replace (all of it but the trainable modules)."""
    adapter = prompter.adapter_state_dict()
    return {k: v for k, v in prompter.backbone.state_dict().items() if f"backbone.{k}" not in adapter}


def save_adapter(prompter, directory: Path) -> Path:
    """Write ``prompter``'s adapter directory (:func:`promptkit.adapter_files.save_adapter_files`)."""
    config = {
        "prompter_config": prompter.config.to_dict(),
        "hook_spec": prompter.spec.to_dict(),
        "feature_dims": prompter.feature_dims,
    }
    return save_adapter_files(directory, PROMPTER_ADAPTER, prompter.adapter_state_dict(), config,
                              backbone=prompter.backbone, frozen=_frozen_state(prompter))


def load_adapter(cls, backbone: nn.Module, directory: Path, hooks: HookSpec | Mapping[str, Any] | None = None, *,
                 check_weights: bool = True):
    """Build a ``cls`` prompter on ``backbone`` from an adapter directory written by :func:`save_adapter`.

    Args:
        hooks: the hook spec it was saved with, its ``output`` function included, for an adapter
            saved with an output function; None: the saved spec.
        check_weights: refuse a backbone whose frozen weights are not the ones it was trained on.

    Raises:
        AdapterLoadError: see :func:`promptkit.adapter_files.read_adapter`; an output function
            recorded but not passed in ``hooks``; other frozen weights; missing tensors.
    """
    files = read_adapter(directory, PROMPTER_ADAPTER, backbone)
    config = files.config
    spec = resolve_hook_spec(files.config_path, config["hook_spec"], hooks)
    try:
        prompter_config = PrompterConfig.from_dict(config["prompter_config"])
    except (KeyError, TypeError, ValueError) as e:
        raise AdapterLoadError(f"{files.config_path}: 'prompter_config' is not valid: {e}") from None
    prompter = cls(backbone, hooks=spec, config=prompter_config, feature_dims=config["feature_dims"])
    try:
        targets = prompter.adapter_state_dict()
        check_tensors(files, targets)
        if check_weights:
            check_frozen_weights(files, PROMPTER_ADAPTER, backbone, _frozen_state(prompter))
        copy_tensors(files, targets)
    except BaseException:
        prompter.unwrap()
        raise
    return prompter
