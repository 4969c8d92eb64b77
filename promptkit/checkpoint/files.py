"""Writing and reading promptkit checkpoints: tensors plus a JSON ``meta`` dict, never pickle.

:func:`save_checkpoint` writes format version 2 atomically (a temporary file in the same
directory, fsynced, then ``os.replace``-d over the target: a crash leaves either the old file or
the new one, never half of one). :func:`load_checkpoint` checks every tensor and metadata value
against the file's integrity record (:mod:`.integrity`), or a version-1 file's header against its
data (:mod:`.legacy`), then the kind, the layout fingerprint and, when asked, the model's layout
(:func:`check_layout`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save
from torch import nn

from .._atomic import atomic_write_bytes
from .errors import CheckpointError
from .fingerprints import fingerprint, shapes_of
from .header import FORMAT, INTEGRITY_KEY, VERSION, open_checkpoint, split_file
from .integrity import integrity_record, verify_integrity
from .legacy import verify_legacy


def _serialize(tensors: dict[str, torch.Tensor], header: dict[str, str]) -> bytes:
    return _st_save(tensors, metadata=header)


def save_checkpoint(
    path: str | Path,
    tensors: Mapping[str, torch.Tensor],
    meta: dict[str, Any] | None = None,
    *,
    kind: str = "weights",
    model_prefix: str = "",
) -> Path:
    """Write ``tensors`` and JSON ``meta`` to ``path`` atomically (format version 2).

    Args:
        tensors: name → tensor (copied to CPU, contiguous; shared storage is fine).
        meta: any JSON-serialisable dict (NaN/inf allowed).
        kind: what the file holds; :func:`load_checkpoint` can demand it.
        model_prefix: the tensors whose names start with it form the model layout fingerprint.
    """
    path = Path(path)
    for k, v in tensors.items():
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"checkpoint tensor {k!r} must be a torch.Tensor, got {type(v).__name__}")
    flat = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}
    model = {k[len(model_prefix) :]: v for k, v in flat.items() if k.startswith(model_prefix)}
    try:
        meta_json = json.dumps(meta or {})  # key order kept: it can carry meaning (modality order)
    except TypeError as e:
        raise TypeError(f"checkpoint meta for {path} is not JSON-serialisable: {e}") from None
    info = {
        "format": FORMAT,
        "version": str(VERSION),
        "kind": kind,
        "meta": meta_json,
        "model_prefix": model_prefix,
        "fingerprint": fingerprint(model),
    }
    entries, _, data = split_file(path, _serialize(flat, info))
    info[INTEGRITY_KEY] = json.dumps(integrity_record(entries, info, data), separators=(",", ":"))
    blob = _serialize(flat, info)
    if split_file(path, blob)[0] != entries:  # the digests were taken on the first layout
        raise RuntimeError(f"safetensors laid out the tensors for {path} differently on a second serialisation")
    atomic_write_bytes(path, blob)
    return path


def load_checkpoint(
    path: str | Path,
    *,
    kind: str | None = None,
    expect: Mapping[str, torch.Tensor | Sequence[int]] | nn.Module | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Every tensor's name, dtype, shape and bytes and every metadata value are checked against
    the file's ``integrity`` record before anything is returned. A version-1 file (older
    promptkit) loads only when it holds a backbone, its header checked against the data
    (:func:`check_legacy_header`), with a :class:`LegacyCheckpointWarning`.

    Args:
        kind: refuse a file of another kind.
        expect: the model layout (name → tensor/shape, or a module's ``state_dict``) the
            file's model tensors must have; a different model is refused with the differences.

    Returns:
        ``(tensors, meta)``; tensors on CPU.

    Raises:
        CheckpointError: missing path, a directory, truncated, corrupt or edited file; not a
            promptkit checkpoint; wrong kind; a version-1 file of a kind other than backbone; a
            different model's layout.
    """
    path = Path(path)
    blob, entries, info, data = open_checkpoint(path)
    if info["version"] == str(VERSION):
        verify_integrity(path, entries, info, data)
    else:
        verify_legacy(path, blob, entries, info)
    if kind is not None and info.get("kind") != kind:
        raise CheckpointError(f"checkpoint {path} holds {info.get('kind')!r}, expected a {kind!r} checkpoint")
    try:
        tensors = _st_load(blob)
    except SafetensorError as e:
        raise CheckpointError(f"checkpoint {path} is corrupt: {e}") from None
    prefix = info.get("model_prefix", "")
    model = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    if fingerprint(model) != info.get("fingerprint"):
        raise CheckpointError(
            f"checkpoint {path} is corrupt: tensor layout does not match its stored fingerprint ('fingerprint')"
        )
    if expect is not None:
        check_layout(path, model, expect)
    try:
        meta = json.loads(info.get("meta", "{}"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"checkpoint {path} has corrupt meta JSON ('meta'): {e}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint {path}: metadata 'meta' is {type(meta).__name__}, expected a JSON object")
    return tensors, meta


def _layout_diff(got: dict[str, tuple], want: dict[str, tuple], limit: int = 5) -> str:
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    shape = [f"{k}: file {list(got[k])} vs model {list(want[k])}" for k in sorted(set(got) & set(want)) if got[k] != want[k]]
    parts = []
    if missing:
        parts.append(f"{len(missing)} tensor(s) the model has but the file lacks, e.g. {missing[:limit]}")
    if extra:
        parts.append(f"{len(extra)} tensor(s) the file has but the model lacks, e.g. {extra[:limit]}")
    if shape:
        parts.append(f"{len(shape)} shape mismatch(es), e.g. {shape[:limit]}")
    return "; ".join(parts) or "same names and shapes"


def check_layout(
    path: str | Path,
    tensors: Mapping[str, torch.Tensor],
    expect: Mapping[str, torch.Tensor | Sequence[int]] | nn.Module,
) -> None:
    """Refuse ``tensors`` (read from ``path``) whose names/shapes are not those of ``expect``, or
    whose dtype is of another family (integer, floating, complex, bool) than the tensor ``expect``
    holds under that name: ``load_state_dict`` would convert the values, not refuse them."""
    want, got = shapes_of(expect), shapes_of(tensors)
    if fingerprint(want) != fingerprint(got):
        raise CheckpointError(f"checkpoint {path} belongs to a different model: {_layout_diff(got, want)}")
    model = expect.state_dict() if isinstance(expect, nn.Module) else expect
    for name, t in tensors.items():
        ref = model.get(name)
        if isinstance(ref, torch.Tensor) and isinstance(t, torch.Tensor) and _family(t.dtype) != _family(ref.dtype):
            raise CheckpointError(
                f"checkpoint {path}: tensor {name!r} is {t.dtype} in the file, but the model's is {ref.dtype} "
                f"({_family(t.dtype)} vs {_family(ref.dtype)} values): a relabelled dtype or another model's file"
            )


def _family(dtype: torch.dtype) -> str:
    if dtype == torch.bool:
        return "bool"
    if dtype.is_complex:
        return "complex"
    return "floating" if dtype.is_floating_point else "integer"
