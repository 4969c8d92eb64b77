"""Checkpoint format version 1 (promptkit before the integrity digests): what still loads, and how.

Version 1 covered the tensor bytes with one checksum (``sha256``) but not the header. Only backbone
files of that format still load (with a :class:`LegacyCheckpointWarning`), and only when their
header is the one safetensors writes for the data: tensors laid out in safetensors' order (dtype,
then name), contiguous from offset 0, each byte range exactly its shape times its dtype's size, so
a swap of two tensors' offsets or a relabelled dtype is refused naming the tensor
(:func:`check_legacy_header`). Version-1 adapters, training states and every other kind are
refused (they are retrained, or a run is started again without ``--resume``). Loading a version-1
backbone and saving it again writes version 2.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import CheckpointError, LegacyCheckpointWarning
from .header import INTEGRITY_KEY, VERSION

LEGACY_KINDS = ("backbone",)
"""The kinds a version-1 file may hold and still load; older promptkit wrote the others too."""

#: the ways to get a current file in place of a version-1 file of each kind that is no longer read
_V1_REMEDY = {
    "adapter": "train the prompts again with this promptkit (the prompt stage of `promptkit run`, or "
    "save_pretrained after training) to write a version-2 adapter",
    "train-state": "run the stage again without --resume (delete the stage folder or pick a new --out): "
    "an older promptkit's training state cannot be resumed",
}
_V1_REMEDY_OTHER = "train it again with this promptkit, which writes version 2"

#: bytes per element of each safetensors dtype
DTYPE_SIZES: dict[str, int] = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "I16": 2, "U16": 2, "F16": 2,
    "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "C64": 8, "F64": 8, "I64": 8, "U64": 8,
}
#: safetensors lays tensors out by this rank, highest first (ties by name): its ``Dtype`` order
_DTYPE_RANK: dict[str, int] = {d: i for i, d in enumerate(
    ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "C64",
     "F64", "I64", "U64"]
)}


def data_checksum(blob: bytes) -> str:
    """Format version 1's checksum: the tensor data section only (not the header)."""
    n = int.from_bytes(blob[:8], "little")
    return hashlib.sha256(blob[8 + n :]).hexdigest()


def verify_legacy(path: Path, blob: bytes, entries: Mapping[str, Mapping[str, Any]], info: Mapping[str, str]) -> None:
    """Format version 1: backbone files only, their header checked against the data, then that
    format's data checksum (the fingerprint is checked by the caller), with a warning.

    Raises:
        CheckpointError: an ``integrity`` key (a version-2 file relabelled), a kind other than
            :data:`LEGACY_KINDS`, a header that is not the layout safetensors writes, or data that
            does not match the stored checksum.
    """
    version, kind = info.get("version"), info.get("kind")
    if INTEGRITY_KEY in info:
        raise CheckpointError(
            f"checkpoint {path} was edited: it says format version {version!r}, which has no "
            f"{INTEGRITY_KEY!r} metadata key, but it has one (expected version {VERSION})"
        )
    if kind not in LEGACY_KINDS:
        raise CheckpointError(
            f"checkpoint {path} holds {kind!r} in checkpoint format version {version}, written by an older "
            f"promptkit; this promptkit loads version-{version} files only of kind "
            f"{' or '.join(map(repr, LEGACY_KINDS))} "
            f"(that format's checksum does not cover the header): {_V1_REMEDY.get(str(kind), _V1_REMEDY_OTHER)}"
        )
    warnings.warn(
        f"checkpoint {path} was written by an older promptkit (checkpoint format version {version}), whose "
        "checksum covers the tensor bytes but not the header; the header was checked against the data instead. "
        f"Load it and save it again (save_checkpoint) to write format version {VERSION}.",
        LegacyCheckpointWarning,
        stacklevel=3,
    )
    check_legacy_header(path, entries)
    if data_checksum(blob) != info.get("sha256"):
        raise CheckpointError(
            f"checkpoint {path} is corrupt: its tensor data does not match the stored checksum ('sha256')"
        )


def check_legacy_header(path: str | Path, entries: Mapping[str, Mapping[str, Any]]) -> None:
    """Refuse a header that is not the one safetensors writes for its tensors: in safetensors'
    order (dtype rank, highest first, then name), contiguous from data offset 0, each byte range
    ``numel * dtype size`` long. Version-1 files have no digest of the header, so this is what
    catches two tensors' offsets swapped or a dtype relabelled to another of the same size.

    Raises:
        CheckpointError: naming ``path``, the tensor and what its entry should be.
    """
    def show(name: str) -> str:
        e = entries[name]
        return f"tensor {name!r} (header: {e['dtype']} {e['shape']} at data offsets {list(e['data_offsets'])})"

    for name, e in entries.items():
        if e["dtype"] not in DTYPE_SIZES:
            raise CheckpointError(
                f"checkpoint {path}: {show(name)} has dtype {e['dtype']!r}, which no version-1 promptkit file holds "
                f"(expected one of {sorted(DTYPE_SIZES)})"
            )
        numel = 1
        for d in e["shape"]:
            numel *= d
        start, end = e["data_offsets"]
        if end - start != numel * DTYPE_SIZES[e["dtype"]]:
            raise CheckpointError(
                f"checkpoint {path} is corrupt or was edited: {show(name)} spans {end - start} bytes, but {numel} "
                f"{e['dtype']} elements take {numel * DTYPE_SIZES[e['dtype']]}: its dtype, shape or offsets were "
                "changed after saving"
            )
    rank = {n: -_DTYPE_RANK[e["dtype"]] for n, e in entries.items()}
    stored = sorted(entries, key=lambda n: (*entries[n]["data_offsets"], rank[n], n))
    written = sorted(entries, key=lambda n: (rank[n], n))  # the order safetensors writes
    for got, want in zip(stored, written):
        if got != want:
            raise CheckpointError(
                f"checkpoint {path} is corrupt or was edited: {show(got)} is stored where the layout safetensors "
                f"writes puts {show(want)} (tensors go in dtype-then-name order): offsets were swapped or a dtype "
                "relabelled after saving"
            )
    at = 0
    for name in stored:
        start, end = entries[name]["data_offsets"]
        if start != at:
            raise CheckpointError(
                f"checkpoint {path} is corrupt or was edited: {show(name)} starts at byte {start} of the data, "
                f"expected {at} (safetensors writes the tensors back to back from 0)"
            )
        at = end
