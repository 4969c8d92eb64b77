"""Integrity digests of a version-2 checkpoint: one sha256 per tensor and per metadata value.

A tensor's digest covers its name, its header dtype and shape and the bytes its header offsets
point at, so a damaged byte, two same-shape tensors' offsets swapped in the header, or a dtype
relabelled (``F32`` -> ``I32``) is refused naming the tensor; each other metadata key's value is
covered too (an edited ``kind``, ``meta`` or ``model_prefix`` is refused naming the key).
safetensors itself refuses data bytes outside every tensor, so nothing that changes what loads is
unchecked.

What the digests protect against, and what they do not: they are unkeyed sha256 sums stored in
the file itself, so they catch corruption (a torn write, a flipped bit, a truncated copy) and
careless edits (a hand-edited header, offset, dtype or metadata value) - anything that changes
what loads without also recomputing the digests. They do not authenticate the file: anyone who
can write it can recompute them, so a forger's file passes. Loading a forged file is still only
loading data (safetensors never runs code, and promptkit imports and calls nothing a file
names); trust its *weights* only as far as you trust where it came from.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .errors import CheckpointError
from .header import INTEGRITY_KEY, VERSION


def _tensor_digest(name: str, entry: Mapping[str, Any], data: memoryview) -> str:
    """sha256 of a tensor's name, header dtype and shape, then the bytes its header offsets select."""
    start, end = entry["data_offsets"]
    h = hashlib.sha256(json.dumps([name, entry["dtype"], entry["shape"]], separators=(",", ":")).encode() + b"\0")
    h.update(data[start:end])
    return h.hexdigest()


def integrity_record(entries: Mapping[str, Mapping[str, Any]], info: Mapping[str, str], data: memoryview) -> dict:
    """The ``integrity`` record: a digest per tensor (sorted by name) and per metadata value."""
    return {
        "tensors": {name: _tensor_digest(name, entries[name], data) for name in sorted(entries)},
        "metadata": {k: hashlib.sha256(v.encode()).hexdigest() for k, v in sorted(info.items()) if k != INTEGRITY_KEY},
    }


def verify_integrity(path: Path, entries: Mapping[str, Mapping[str, Any]], info: Mapping[str, str], data: memoryview) -> None:
    """Refuse a version-2 file whose tensors or metadata differ from what was saved, naming them."""
    raw = info.get(INTEGRITY_KEY)
    if raw is None:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or was edited: it lacks the {INTEGRITY_KEY!r} metadata key "
            f"every version-{VERSION} checkpoint has (its checksum)"
        )
    try:
        stored = json.loads(raw)
        want_t, want_m = stored["tensors"], stored["metadata"]
        if not all(isinstance(d, dict) and all(isinstance(v, str) for v in d.values()) for d in (want_t, want_m)):
            raise TypeError
    except (json.JSONDecodeError, TypeError, KeyError):
        raise CheckpointError(
            f"checkpoint {path} is corrupt: its {INTEGRITY_KEY!r} metadata is not "
            "{'tensors': {name: sha256}, 'metadata': {key: sha256}} (its checksum cannot be read)"
        ) from None
    got = integrity_record(entries, info, data)

    def tensor_changed(name: str) -> str:
        e = entries[name]
        return (f"(header: {e['dtype']} {e['shape']} at data offsets {e['data_offsets']}) does not match its stored "
                "checksum: its bytes, dtype, shape or offsets changed after saving")

    problems = _mismatches("tensor", want_t, got["tensors"], gone="was saved but the header no longer lists it",
                           added="is in the header but was not saved", changed=tensor_changed)
    problems += _mismatches("metadata key", want_m, got["metadata"], gone="was saved but is gone",
                            added="was added after saving",
                            changed=lambda _: "does not match its stored checksum: its value was edited")
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise CheckpointError(
            f"checkpoint {path} is corrupt or was edited after saving: {'; '.join(problems[:3])}{more}"
        )


def _mismatches(
    what: str, want: Mapping[str, str], got: Mapping[str, str], gone: str, added: str, changed: Callable[[str], str]
) -> list[str]:
    """One message per name (sorted) whose checksum as saved (``want``) and as read (``got``)
    differ, or that only one of them has: ``"<what> 'name' <gone | added | changed(name)>"``."""
    problems = []
    for name in sorted(set(want) | set(got)):
        if name not in got:
            problems.append(f"{what} {name!r} {gone}")
        elif name not in want:
            problems.append(f"{what} {name!r} {added}")
        elif want[name] != got[name]:
            problems.append(f"{what} {name!r} {changed(name)}")
    return problems
