"""The prompter's adapter: its type and config keys, saved and loaded through :mod:`promptkit.adapter_files`.

The config holds, beside the common keys (format, version, backbone binding), the prompter config,
the hook spec (a ``features`` module entry as its record ``{path, layout, arg, index, key, width}``),
the feature sizes and every hook point's width (``widths``: as measured when it was made, so loading
needs no probe batch); the weights are :meth:`MissingModalityPrompter.adapter_state_dict`
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
    if not isinstance(features, dict) or not features or not all(isinstance(v, (str, dict)) for v in features.values()):
        raise AdapterLoadError(
            f"{path}: key 'hook_spec.features' must be a non-empty JSON object of modality -> argument name "
            f"(or module entry object), got {features!r}"
        )
    widths = config.get("widths", {})
    ok = isinstance(widths, dict) and set(widths) <= {"signal", "type", "features"} and all(
        isinstance(widths.get(k, {}), dict) for k in ("signal", "features")) and isinstance(widths.get("type", []), list)
    values = [*widths.get("signal", {}).values(), *widths.get("type", []), *widths.get("features", {}).values()] if ok else []
    if not ok or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in values):
        raise AdapterLoadError(f"{path}: key 'widths' must be {{signal: {{m: D}}, type: [D], features: {{m: D}}}} of "
                               f"positive integers, got {widths!r}")


PROMPTER_ADAPTER = register_adapter_type(AdapterType(
    name="prompter",
    kind="adapter",
    label="prompter adapter",
    loader="MissingModalityPrompter.from_pretrained(backbone, path)",
    schema={"prompter_config": dict, "hook_spec": dict, "feature_dims": dict},
    check=_check,
))
_PROMPTER_TYPES: dict[str, AdapterType] = {PROMPTER_ADAPTER.name: PROMPTER_ADAPTER}


def prompter_adapter_type(name: str, label: str, loader: str) -> AdapterType:
    """An adapter type for a prompter subclass (another method on the same wrapper): the prompter's
    config keys and checks under its own name, so one method's adapter is refused by another's loader."""
    _PROMPTER_TYPES[name] = register_adapter_type(AdapterType(
        name=name, kind="adapter", label=label, loader=loader, schema=PROMPTER_ADAPTER.schema, check=_check))
    return _PROMPTER_TYPES[name]


def adapter_type_of(cls: type) -> AdapterType:
    """The adapter type of prompter class ``cls`` (by its ``adapter_type`` name)."""
    if cls.adapter_type not in _PROMPTER_TYPES:
        raise KeyError(f"{cls.__name__}.adapter_type {cls.adapter_type!r} is not declared; declare it with "
                       "promptkit.prompter.io.prompter_adapter_type")
    return _PROMPTER_TYPES[cls.adapter_type]


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
        "widths": prompter.hook_widths.to_dict(),
    }
    return save_adapter_files(directory, adapter_type_of(type(prompter)), prompter.adapter_state_dict(), config,
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
    adapter_type = adapter_type_of(cls)
    files = read_adapter(directory, adapter_type, backbone)
    config = files.config
    spec = resolve_hook_spec(files.config_path, config["hook_spec"], hooks)
    try:
        prompter_config = PrompterConfig.from_dict(config["prompter_config"])
    except (KeyError, TypeError, ValueError) as e:
        raise AdapterLoadError(f"{files.config_path}: 'prompter_config' is not valid: {e}") from None
    prompter = cls(backbone, hooks=spec, config=prompter_config, feature_dims=config["feature_dims"] or None,
                   widths=config.get("widths"))
    try:
        targets = prompter.adapter_state_dict()
        check_tensors(files, targets)
        if check_weights:
            check_frozen_weights(files, adapter_type, backbone, _frozen_state(prompter))
        copy_tensors(files, targets)
    except BaseException:
        prompter.unwrap()
        raise
    return prompter
