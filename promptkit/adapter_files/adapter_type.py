"""Adapter types: what one kind of adapter is called and holds, and the types declared so far.

Each type is one :class:`AdapterType` declared by the module that owns the adapter (the prompter,
LoRA, the attention prompts) with :func:`register_adapter_type`, so that another type's loader can
say how to load a directory it refuses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..checkpoint import CheckpointError

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



def registered_type(name: Any) -> AdapterType | None:
    """The type registered under ``name`` (a config's ``adapter_type``), None if there is none."""
    return _TYPES.get(name) if isinstance(name, str) else None
