"""Adapter files: ``promptkit_config.json`` + ``adapter_model.safetensors`` (adapter weights only).

The JSON holds the prompter config, the hook spec, the backbone class, a fingerprint of the
backbone's parameter names and shapes and the promptkit version. The weights file is a promptkit
checkpoint (kind ``"adapter"``, see :mod:`promptkit.checkpoint`), so a truncated or altered file is
refused by its own checksum, and its meta carries a copy of that config (key order kept: the
modality order means something). Loading validates the JSON against a schema (required keys and
their types), then refuses a JSON that differs from the copy in the weights - an edited modality
order, a swapped hook path, a deleted key - naming the file and the key, all before any tensor is
copied; nothing is ever unpickled.

An adapter holds no code. A hook spec whose ``output`` was a function is saved with the record
``{"call": "module:qualname"}`` (provenance only); loading never imports it: the caller passes
the spec with its function back, ``from_pretrained(backbone, directory, hooks=spec)``, and
without it loading stops with an error naming the file and the key.

Older adapters (format ``promptkit-adapter/1``, weights in checkpoint format version 1, written
before the config was bound to the weights) are refused with a message saying so: train the
prompts again to write the current format.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .._atomic import atomic_write_bytes
from ..checkpoint import CheckpointError, fingerprint, load_checkpoint, save_checkpoint
from ..hookspec import HookSpec
from .config import PrompterConfig

CONFIG_NAME = "promptkit_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
FORMAT = "promptkit-adapter/2"
LEGACY_FORMATS = ("promptkit-adapter/1",)
"""Formats older promptkit wrote, refused with a message that says so."""

#: required top-level keys of ``promptkit_config.json`` and their JSON types
CONFIG_SCHEMA: dict[str, type] = {
    "format": str,
    "promptkit_version": str,
    "backbone_class": str,
    "backbone_fingerprint": str,
    "prompter_config": dict,
    "hook_spec": dict,
    "feature_dims": dict,
}
_JSON_TYPE = {str: "string", dict: "object", int: "integer", list: "array"}


class AdapterLoadError(ValueError):
    """An adapter directory that cannot be loaded onto the given backbone."""


def _canonical(value: Any) -> str:
    """The JSON text a config is compared by: no whitespace, key order kept (it carries meaning)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True)


def _json_type(value: Any) -> str:
    return "null" if value is None else _JSON_TYPE.get(type(value), type(value).__name__)


def validate_config(path: Path, config: Any) -> None:
    """Refuse an adapter config that lacks a required key or has one of the wrong type.

    Raises:
        AdapterLoadError: naming ``path``, the key and the expected type.
    """
    if not isinstance(config, dict):
        raise AdapterLoadError(f"{path} holds a JSON {_json_type(config)}, expected an object (an adapter config)")
    missing = [k for k in CONFIG_SCHEMA if k not in config]
    if missing:
        raise AdapterLoadError(
            f"{path} lacks required key(s) {missing}: not a complete promptkit adapter config "
            f"(required: {list(CONFIG_SCHEMA)})"
        )
    for key, typ in CONFIG_SCHEMA.items():
        if not isinstance(config[key], typ):
            raise AdapterLoadError(
                f"{path}: key {key!r} must be a JSON {_JSON_TYPE[typ]}, got {_json_type(config[key])} {config[key]!r}"
            )
    for m, d in config["feature_dims"].items():
        if not isinstance(d, int) or isinstance(d, bool) or d < 1:
            raise AdapterLoadError(f"{path}: key 'feature_dims.{m}' must be a positive integer, got {d!r}")
    features = config["hook_spec"].get("features")
    if not isinstance(features, dict) or not features or not all(isinstance(v, str) for v in features.values()):
        raise AdapterLoadError(
            f"{path}: key 'hook_spec.features' must be a non-empty JSON object of modality -> argument name, "
            f"got {features!r}"
        )


def config_differences(got: Any, saved: Any, where: str = "") -> list[str]:
    """Where ``got`` (a config as read) differs from ``saved`` (the copy in the weights), key by key."""
    label = f"key {where!r}" if where else "the config"
    if isinstance(got, dict) and isinstance(saved, dict):
        out = []
        missing, extra = [k for k in saved if k not in got], [k for k in got if k not in saved]
        if missing:
            out.append(f"{label} lacks {missing}, which the weights were saved with")
        if extra:
            out.append(f"{label} has {extra}, which the weights were not saved with")
        order_got, order_saved = [k for k in got if k in saved], [k for k in saved if k in got]
        if order_got != order_saved:
            out.append(f"{label} has key order {order_got}, the weights were saved with {order_saved}")
        for k in order_saved:
            out += config_differences(got[k], saved[k], f"{where}.{k}" if where else k)
        return out
    if isinstance(got, list) and isinstance(saved, list) and len(got) == len(saved):
        return [d for i, (g, s) in enumerate(zip(got, saved)) for d in config_differences(g, s, f"{where}[{i}]")]
    if _canonical(got) != _canonical(saved):
        return [f"{label} is {_canonical(got)}, the weights were saved with {_canonical(saved)}"]
    return []


def save_adapter(prompter, directory: Path) -> None:
    """Write the adapter weights (with a copy of the config in their meta), then the JSON config."""
    from .. import __version__

    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"cannot save an adapter to {directory}: it is a file, expected a directory")
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "format": FORMAT,
        "promptkit_version": __version__,
        "backbone_class": type(prompter.backbone).__name__,
        "backbone_fingerprint": fingerprint(prompter.backbone),
        "prompter_config": prompter.config.to_dict(),
        "hook_spec": prompter.spec.to_dict(),
        "feature_dims": prompter.feature_dims,
    }
    config = json.loads(_canonical(config))  # as it will read back (tuples become lists)
    save_checkpoint(
        directory / WEIGHTS_NAME, prompter.adapter_state_dict(), {"format": FORMAT, "config": config}, kind="adapter"
    )
    atomic_write_bytes(directory / CONFIG_NAME, json.dumps(config, indent=2).encode())


def _check_binding(cfg_path: Path, weights_path: Path, config: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    """Refuse a config that is not the one the weights were saved with."""
    saved = meta.get("config")
    if saved is None:
        raise AdapterLoadError(
            f"{cfg_path} does not match the weights {weights_path}: the weights carry no copy of the config "
            f"(meta key 'config', present in every {FORMAT} adapter); they were written by other software or re-saved"
        )
    if _canonical(config) != _canonical(saved):
        diffs = config_differences(config, saved) or ["its canonical JSON differs"]
        more = f" (and {len(diffs) - 3} more)" if len(diffs) > 3 else ""
        raise AdapterLoadError(
            f"{cfg_path} does not match the weights {weights_path}: {'; '.join(diffs[:3])}{more}. The config was "
            "edited after saving, or the two files come from different saves; save the adapter again"
        )


def _hook_spec(cfg_path: Path, saved: dict[str, Any], hooks: HookSpec | Mapping[str, Any] | None) -> HookSpec:
    """The spec to build the prompter on: the saved one, or the caller's ``hooks`` where it equals
    the saved one (its ``output`` may be a function where the file records that one was used).
    Nothing named in ``saved`` is imported.

    Raises:
        AdapterLoadError: the saved spec records an output function and ``hooks`` is None; ``hooks``
            differs from the saved spec, or gives no function where one is needed.
    """
    try:
        spec = HookSpec.from_dict(dict(saved))
        given = None if hooks is None else hooks if isinstance(hooks, HookSpec) else HookSpec.from_dict(dict(hooks))
    except (KeyError, TypeError, ValueError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        where = f"{cfg_path}: 'hook_spec'" if hooks is None else "hooks="
        raise AdapterLoadError(f"{where} is not a valid hook spec: {msg}") from None
    usage = (f"from_pretrained(backbone, {str(cfg_path.parent)!r}, hooks=spec), spec being the hook spec it was "
             "saved with and its 'output' the function")
    if given is None:
        if spec.needs_output_function:
            name = spec.output.call or "a lambda or a local function"
            raise AdapterLoadError(
                f"{cfg_path}: key 'hook_spec.output' is {spec.output.to_dict()}: the adapter was saved with an output "
                f"function ({name}), which an adapter does not hold and loading does not import; pass it back: {usage}"
            )
        return spec
    if given.needs_output_function:
        raise AdapterLoadError(
            f"hooks= passed to load {cfg_path.parent} has 'output' {given.output.to_dict()}, the record of a function, "
            "not the function; pass the function itself"
        )
    want = json.loads(_canonical(saved))
    got = json.loads(_canonical(given.to_dict()))
    if callable(given.output) and isinstance(want.get("output"), dict):
        got["output"] = want["output"]  # the saved name is provenance: the function is the caller's
    diffs = config_differences(got, want, "hook_spec")
    if diffs:
        more = f" (and {len(diffs) - 3} more)" if len(diffs) > 3 else ""
        raise AdapterLoadError(
            f"hooks= differs from the hook spec {cfg_path} was saved with: {'; '.join(diffs[:3])}{more} (the "
            "prompts belong to the hook points they were trained on)"
        )
    return given


def load_adapter(cls, backbone: nn.Module, directory: Path, hooks: HookSpec | Mapping[str, Any] | None = None):
    """Build a ``cls`` prompter on ``backbone`` from an adapter directory written by :func:`save_adapter`.

    Args:
        hooks: the hook spec it was saved with, its ``output`` function included, for an adapter
            saved with an output function (see :func:`_hook_spec`); None: the saved spec.

    Raises:
        AdapterLoadError: a missing or misnamed path, a config that fails the schema or does not
            match the weights, an older promptkit's format, another backbone, corrupt or edited
            weights, missing tensors; an output function recorded but not passed in ``hooks``.
    """
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
    validate_config(cfg_path, config)
    if config["format"] in LEGACY_FORMATS:
        raise AdapterLoadError(
            f"{cfg_path} has format {config['format']!r}, written by an older promptkit, which this promptkit no "
            "longer loads (its config is not bound to its weights, and their checksum does not cover the header): "
            f"train the prompts again with this promptkit to write format {FORMAT!r}"
        )
    if config["format"] != FORMAT:
        raise AdapterLoadError(f"{cfg_path} has format {config['format']!r}, expected {FORMAT!r}")
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
        tensors, meta = load_checkpoint(weights_path, kind="adapter")
    except CheckpointError as e:
        raise AdapterLoadError(str(e)) from None
    _check_binding(cfg_path, weights_path, config, meta)

    spec = _hook_spec(cfg_path, config["hook_spec"], hooks)
    try:
        prompter_config = PrompterConfig.from_dict(config["prompter_config"])
    except (KeyError, TypeError, ValueError) as e:
        raise AdapterLoadError(f"{cfg_path}: 'prompter_config' is not valid: {e}") from None
    prompter = cls(backbone, hooks=spec, config=prompter_config, feature_dims=config["feature_dims"])
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
