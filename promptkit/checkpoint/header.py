"""The safetensors header of a promptkit checkpoint: its format keys, parsed and checked.

A promptkit checkpoint's string metadata (``__metadata__``) holds ``format`` = :data:`FORMAT`,
``version`` (:data:`VERSION`, or one of :data:`LEGACY_VERSIONS`), ``kind``, ``meta`` (the
caller's JSON), ``model_prefix``, ``fingerprint`` and, from version 2, :data:`INTEGRITY_KEY`.
Reading refuses a short file, a header that is not one JSON object (a key twice included),
malformed tensor entries and offsets past the end of the data, naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import CheckpointError

FORMAT = "promptkit"
VERSION = 2
LEGACY_VERSIONS = ("1",)
INTEGRITY_KEY = "integrity"


def _is_int_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in value)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads`` hook: a key twice in one object is an error (readers could disagree on which wins)."""
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"key {k!r} appears twice")
        out[k] = v
    return out


def split_file(path: Path, blob: bytes) -> tuple[dict[str, dict[str, Any]], dict[str, str], memoryview]:
    """``(tensor entries, string metadata, data section)`` of a safetensors ``blob`` read from ``path``.

    Raises:
        CheckpointError: a short file, a header that is not JSON, a malformed tensor entry or
            metadata, or offsets past the end of the data.
    """
    if len(blob) < 8:
        raise CheckpointError(f"checkpoint {path} is truncated or not a safetensors file ({len(blob)} bytes)")
    n = int.from_bytes(blob[:8], "little")
    if 8 + n > len(blob):
        raise CheckpointError(
            f"checkpoint {path} is truncated or not a safetensors file "
            f"(header says {n} bytes, file has {len(blob) - 8} after the length)"
        )
    try:
        header = json.loads(blob[8 : 8 + n], object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, ValueError) as e:  # JSONDecodeError is a ValueError
        raise CheckpointError(f"checkpoint {path} has a corrupt header ({e}); it is not a usable safetensors file") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"checkpoint {path} has a corrupt header (not a JSON object)")
    info = header.pop("__metadata__", None) or {}
    if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
        raise CheckpointError(f"checkpoint {path} has a corrupt header: '__metadata__' must map strings to strings")
    for name, entry in header.items():
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("dtype"), str)
            and _is_int_list(entry.get("shape"))
            and _is_int_list(offsets)
            and len(offsets) == 2
            and offsets[0] <= offsets[1]
        ):
            raise CheckpointError(
                f"checkpoint {path} has a corrupt header (bad tensor entries): tensor {name!r} is {entry!r}, "
                "expected {'dtype': str, 'shape': [int, ...], 'data_offsets': [start, end]}"
            )
    need = max((e["data_offsets"][1] for e in header.values()), default=0)
    if len(blob) - 8 - n < need:
        raise CheckpointError(
            f"checkpoint {path} is truncated: {len(blob) - 8 - n} of {need} bytes of tensor data present"
        )
    return header, info, memoryview(blob)[8 + n :]


def open_checkpoint(path: Path) -> tuple[bytes, dict[str, dict[str, Any]], dict[str, str], memoryview]:
    """The file's bytes, tensor entries, promptkit metadata and data section.

    A missing path, a directory, a short, corrupt or foreign file, or an unknown version is an error.
    """
    if path.is_dir():
        inside = sorted(p.name for p in path.glob("*.safetensors"))[:3]
        hint = f"; it holds {inside}, pass one of those" if inside else "; expected a .safetensors file"
        raise CheckpointError(f"checkpoint {path} is a directory, not a checkpoint file{hint}")
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a regular file")
    blob = path.read_bytes()
    entries, info, data = split_file(path, blob)
    if info.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is a safetensors file but not a promptkit checkpoint (metadata format="
            f"{info.get('format')!r}, expected {FORMAT!r})"
        )
    if info.get("version") not in (str(VERSION), *LEGACY_VERSIONS):
        raise CheckpointError(
            f"checkpoint {path} has format version {info.get('version')!r}; this promptkit reads "
            f"{VERSION} (and the older {', '.join(LEGACY_VERSIONS)})"
        )
    return blob, entries, info, data
