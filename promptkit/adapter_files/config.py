"""Adapter configs as JSON: the schema check, the canonical text and the differences, key by key."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .adapter_type import OPTIONAL_SCHEMA, AdapterLoadError

_JSON_TYPE = {str: "string", dict: "object", int: "integer", list: "array"}


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


def first_differences(diffs: list[str]) -> str:
    """The first three of ``diffs``, joined, and how many more there are."""
    more = f" (and {len(diffs) - 3} more)" if len(diffs) > 3 else ""
    return f"{'; '.join(diffs[:3])}{more}"
