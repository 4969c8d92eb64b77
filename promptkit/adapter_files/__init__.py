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

The parts: :mod:`.adapter_type` (:class:`AdapterType`, the declared types), :mod:`.config` (the
schema check and the differences), :mod:`.directory` (saving and reading the two files),
:mod:`.tensors` (the frozen-weights check and the copy into the model), :mod:`.hooks` (the hook
spec to build on). Every name is importable from ``promptkit.adapter_files``.
"""

from .adapter_type import (
    COMMON_SCHEMA,
    OPTIONAL_SCHEMA,
    UNTYPED,
    AdapterLoadError,
    AdapterType,
    register_adapter_type,
    registered_type,
)
from .config import canonical, config_differences, validate_config
from .directory import (
    CONFIG_NAME,
    FORMAT,
    LEGACY_FORMATS,
    WEIGHTS_NAME,
    AdapterFiles,
    read_adapter,
    save_adapter_files,
)
from .hooks import resolve_hook_spec
from .tensors import check_frozen_weights, check_tensors, copy_tensors

__all__ = [
    "COMMON_SCHEMA",
    "CONFIG_NAME",
    "FORMAT",
    "LEGACY_FORMATS",
    "OPTIONAL_SCHEMA",
    "UNTYPED",
    "WEIGHTS_NAME",
    "AdapterFiles",
    "AdapterLoadError",
    "AdapterType",
    "canonical",
    "check_frozen_weights",
    "check_tensors",
    "config_differences",
    "copy_tensors",
    "read_adapter",
    "register_adapter_type",
    "registered_type",
    "resolve_hook_spec",
    "save_adapter_files",
    "validate_config",
]
