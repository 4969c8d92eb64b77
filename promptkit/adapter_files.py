"""Adapter directories: one file path for every adapter promptkit writes (peft's ``save_pretrained``).

An adapter directory holds two files, whatever the adapter's type:

- ``promptkit_config.json``: the adapter's type (``adapter_type``), the format, the promptkit
  version, the binding to the frozen backbone (its class, ``backbone_fingerprint`` - the sha256 of
  its parameter names and shapes - and ``backbone_weights`` - the sha256 of the frozen weights the
  adapter was trained on, :func:`promptkit.checkpoint.state_digest`) and the type's own keys;
- ``adapter_model.safetensors``: the adapter tensors only, a promptkit checkpoint (format 2, whose
  integrity digests refuse a truncated or edited file) of the type's ``kind``, its meta carrying a
  copy of that config (key order kept: a modality order means something).

Loading (:func:`read_adapter`) refuses, before any tensor is copied and naming the file and the
key: a config that fails the schema (required keys and their JSON types), another adapter type, an
older format, another backbone class or layout, corrupt weights, a config that differs from the
copy in the weights; then, once the caller has built the model, other frozen weights
(:func:`check_frozen_weights`) and missing, extra or misshapen tensors (:func:`copy_tensors`).
Nothing is ever unpickled, and nothing a file names is imported: a hook spec saved with an output
function records it as ``{"call": "module:qualname"}`` and the caller gives the function back
(:func:`resolve_hook_spec`).

Each adapter type is one :class:`AdapterType` declared by the module that owns the adapter (the
prompter, LoRA, the attention prompts). Files older promptkit wrote still load: a config without
``adapter_type`` is a prompter's (:data:`UNTYPED`), one without ``backbone_weights`` loads
without that check, and a type's single-file adapter (``legacy_file``: a checkpoint whose meta is
the config) loads through the same checks. Format ``promptkit-adapter/1`` is refused, saying so.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import __version__
from ._atomic import atomic_write_bytes
from .checkpoint import (
    CheckpointError,
    fingerprint,
    load_checkpoint,
    save_checkpoint,
    state_digest,
)
from .hookspec import HookSpec

CONFIG_NAME = "promptkit_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
FORMAT = "promptkit-adapter/2"
LEGACY_FORMATS = ("promptkit-adapter/1",)
"""Formats older promptkit wrote, refused with a message that says so."""
UNTYPED = "prompter"
"""The type of a config without ``adapter_type``: only the prompter wrote configs before types."""

#: required keys of every adapter config and their JSON types
COMMON_SCHEMA: dict[str, type] = {
    "format": str,
    "promptkit_version": str,
    "backbone_class": str,
    "backbone_fingerprint": str,
}
#: keys a config written by older promptkit may lack, checked when present
OPTIONAL_SCHEMA: dict[str, type] = {"adapter_type": str, "backbone_weights": str}
_JSON_TYPE = {str: "string", dict: "object", int: "integer", list: "array"}


class AdapterLoadError(CheckpointError):
    """An adapter directory that cannot be loaded onto the given backbone."""


@dataclass(frozen=True)
class AdapterType:
    """What one kind of adapter is called and holds.

    Args:
        name: the config's ``adapter_type``.
        kind: the checkpoint kind of its weights file.
        label: the words for it in messages (``"LoRA adapter"``).
        loader: how to load one, named in the refusal of another type's loader.
        schema: its own required config keys and their JSON types (beside :data:`COMMON_SCHEMA`).
        check: further checks of a config that passed the schema, ``(config path, config)``.
        legacy_file: the single file older promptkit wrote for it, still read.
    """

    name: str
    kind: str
    label: str
    loader: str
    schema: Mapping[str, type] = field(default_factory=dict)
    check: Callable[[Path, dict[str, Any]], None] | None = None
    legacy_file: str | None = None

    @property
    def required(self) -> dict[str, type]:
        """Every required key of its config: the common ones, then its own."""
        return {**COMMON_SCHEMA, **self.schema}


_TYPES: dict[str, AdapterType] = {}


def register_adapter_type(adapter_type: AdapterType) -> AdapterType:
    """Record ``adapter_type`` so that another type's loader can say how to load it; returns it."""
    known = _TYPES.get(adapter_type.name)
    if known is not None and known != adapter_type:
        raise ValueError(f"adapter type {adapter_type.name!r} is already registered as {known}")
    _TYPES[adapter_type.name] = adapter_type
    return adapter_type


# --- config JSON ------------------------------------------------------------------------------
def canonical(value: Any) -> str:
    """The JSON text a config is compared by: no whitespace, key order kept (it carries meaning)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True)


def _json_type(value: Any) -> str:
    return "null" if value is None else _JSON_TYPE.get(type(value), type(value).__name__)


def validate_config(path: Path, config: Any, schema: Mapping[str, type]) -> None:
    """Refuse an adapter config that lacks a key of ``schema`` or has one of the wrong type.

    Raises:
        AdapterLoadError: naming ``path``, the key and the expected type.
    """
    if not isinstance(config, dict):
        raise AdapterLoadError(f"{path} holds a JSON {_json_type(config)}, expected an object (an adapter config)")
    missing = [k for k in schema if k not in config]
    if missing:
        raise AdapterLoadError(
            f"{path} lacks required key(s) {missing}: not a complete promptkit adapter config "
            f"(required: {list(schema)})"
        )
    for key, typ in {**schema, **{k: t for k, t in OPTIONAL_SCHEMA.items() if k in config}}.items():
        if not isinstance(config[key], typ):
            raise AdapterLoadError(
                f"{path}: key {key!r} must be a JSON {_JSON_TYPE[typ]}, got {_json_type(config[key])} {config[key]!r}"
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
    if canonical(got) != canonical(saved):
        return [f"{label} is {canonical(got)}, the weights were saved with {canonical(saved)}"]
    return []


def _first(diffs: list[str]) -> str:
    more = f" (and {len(diffs) - 3} more)" if len(diffs) > 3 else ""
    return f"{'; '.join(diffs[:3])}{more}"


# --- saving -----------------------------------------------------------------------------------
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
    other = _TYPES.get(name) if isinstance(name, str) else None
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
            f"{cfg_path} does not match the weights {weights_path}: {_first(diffs)}. The config was "
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


# --- hook specs -------------------------------------------------------------------------------
def resolve_hook_spec(cfg_path: Path, saved: Mapping[str, Any], hooks: HookSpec | Mapping[str, Any] | None) -> HookSpec:
    """The spec to build on: the saved one, or the caller's ``hooks`` where it equals the saved one
    (its ``output`` may be a function where the file records that one was used). Nothing named in
    ``saved`` is imported.

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
    want = json.loads(canonical(saved))
    got = json.loads(canonical(given.to_dict()))
    if callable(given.output) and isinstance(want.get("output"), dict):
        got["output"] = want["output"]  # the saved name is provenance: the function is the caller's
    diffs = config_differences(got, want, "hook_spec")
    if diffs:
        raise AdapterLoadError(
            f"hooks= differs from the hook spec {cfg_path} was saved with: {_first(diffs)} (the "
            "prompts belong to the hook points they were trained on)"
        )
    return given
