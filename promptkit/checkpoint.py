"""Atomic safetensors checkpoints: tensors plus a JSON ``meta`` dict, never pickle.

A promptkit checkpoint is a safetensors file whose string metadata holds

- ``format`` = ``"promptkit"`` and ``version``: refuse anything else;
- ``kind``: what the file is (``"backbone"``, ``"train-state"``, ``"weights"``, ...);
- ``meta``: the caller's JSON;
- ``fingerprint``: sha256 of the model tensors' names and shapes (those under ``model_prefix``),
  so a checkpoint of a different model is refused by name rather than loaded wrongly;
- ``sha256``: a checksum of the tensor bytes, so a damaged file is refused.

Files are written to a temporary file in the same directory, fsynced, then ``os.replace``-d over
the target: a crash leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save
from torch import nn

from ._atomic import atomic_write_bytes

FORMAT = "promptkit"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and what is wrong."""


# --- fingerprints ---------------------------------------------------------------------------
def _shapes(named: Mapping[str, Any] | nn.Module) -> dict[str, tuple[int, ...]]:
    if isinstance(named, nn.Module):
        named = named.state_dict()
    return {k: tuple(v.shape) if isinstance(v, torch.Tensor) else tuple(v) for k, v in named.items()}


def fingerprint(named: Mapping[str, torch.Tensor | Sequence[int]] | nn.Module) -> str:
    """sha256 (16 hex digits) of sorted tensor names and shapes: identifies a model layout."""
    shapes = _shapes(named)
    blob = "\n".join(f"{k}:{list(s)}" for k, s in sorted(shapes.items())).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


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


# --- save / load ----------------------------------------------------------------------------
def _serialize(tensors: dict[str, torch.Tensor], header: dict[str, str]) -> bytes:
    return _st_save(tensors, metadata=header)


def _data_checksum(blob: bytes) -> str:
    n = int.from_bytes(blob[:8], "little")
    return hashlib.sha256(blob[8 + n :]).hexdigest()


def save_checkpoint(
    path: str | Path,
    tensors: Mapping[str, torch.Tensor],
    meta: dict[str, Any] | None = None,
    *,
    kind: str = "weights",
    model_prefix: str = "",
) -> Path:
    """Write ``tensors`` and JSON ``meta`` to ``path`` atomically.

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
    header = {
        "format": FORMAT,
        "version": str(VERSION),
        "kind": kind,
        "meta": meta_json,
        "model_prefix": model_prefix,
        "fingerprint": fingerprint(model),
    }
    header["sha256"] = _data_checksum(_serialize(flat, header))
    blob = _serialize(flat, header)
    atomic_write_bytes(path, blob)
    return path


def _open(path: Path) -> tuple[bytes, dict[str, str]]:
    """The file's bytes and promptkit metadata; a short, corrupt or foreign file is an error."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    blob = path.read_bytes()
    if len(blob) < 8:
        raise CheckpointError(f"checkpoint {path} is truncated or not a safetensors file ({len(blob)} bytes)")
    n = int.from_bytes(blob[:8], "little")
    if 8 + n > len(blob):
        raise CheckpointError(
            f"checkpoint {path} is truncated or not a safetensors file "
            f"(header says {n} bytes, file has {len(blob) - 8} after the length)"
        )
    try:
        header = json.loads(blob[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint {path} has a corrupt header ({e}); it is not a usable safetensors file") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"checkpoint {path} has a corrupt header (not a JSON object)")
    try:
        need = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (TypeError, KeyError, IndexError, ValueError):
        raise CheckpointError(f"checkpoint {path} has a corrupt header (bad tensor entries)") from None
    if len(blob) - 8 - n < need:
        raise CheckpointError(
            f"checkpoint {path} is truncated: {len(blob) - 8 - n} of {need} bytes of tensor data present"
        )
    info = header.get("__metadata__") or {}
    if info.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is a safetensors file but not a promptkit checkpoint (metadata format="
            f"{info.get('format')!r}, expected {FORMAT!r})"
        )
    if info.get("version") != str(VERSION):
        raise CheckpointError(f"checkpoint {path} has format version {info.get('version')!r}; this promptkit reads {VERSION}")
    return blob, info


def load_checkpoint(
    path: str | Path,
    *,
    kind: str | None = None,
    expect: Mapping[str, torch.Tensor | Sequence[int]] | nn.Module | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Args:
        kind: refuse a file of another kind.
        expect: the model layout (name → tensor/shape, or a module's ``state_dict``) the
            file's model tensors must have; a different model is refused with the differences.

    Returns:
        ``(tensors, meta)``; tensors on CPU.

    Raises:
        CheckpointError: missing, truncated or corrupt file; not a promptkit checkpoint; wrong
            kind; a different model's layout.
    """
    path = Path(path)
    blob, info = _open(path)
    if kind is not None and info.get("kind") != kind:
        raise CheckpointError(f"checkpoint {path} holds {info.get('kind')!r}, expected a {kind!r} checkpoint")
    if _data_checksum(blob) != info.get("sha256"):
        raise CheckpointError(f"checkpoint {path} is corrupt: its tensor data does not match the stored checksum")
    try:
        tensors = _st_load(blob)
    except SafetensorError as e:
        raise CheckpointError(f"checkpoint {path} is corrupt: {e}") from None
    prefix = info.get("model_prefix", "")
    model = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    if fingerprint(model) != info.get("fingerprint"):
        raise CheckpointError(f"checkpoint {path} is corrupt: tensor layout does not match its stored fingerprint")
    if expect is not None:
        check_layout(path, model, expect)
    try:
        meta = json.loads(info.get("meta", "{}"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"checkpoint {path} has corrupt meta JSON: {e}") from None
    return tensors, meta


def check_layout(
    path: str | Path,
    tensors: Mapping[str, torch.Tensor],
    expect: Mapping[str, torch.Tensor | Sequence[int]] | nn.Module,
) -> None:
    """Refuse ``tensors`` (read from ``path``) whose names/shapes are not those of ``expect``."""
    want, got = _shapes(expect), _shapes(tensors)
    if fingerprint(want) != fingerprint(got):
        raise CheckpointError(f"checkpoint {path} belongs to a different model: {_layout_diff(got, want)}")


# --- prefixes -------------------------------------------------------------------------------
def add_prefix(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in tensors.items()}


def take_prefix(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under ``prefix``, with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


# --- optimizer / scheduler state ------------------------------------------------------------
def optimizer_to_flat(state_dict: dict[str, Any], prefix: str = "optim.") -> tuple[dict[str, torch.Tensor], dict]:
    """Split ``optimizer.state_dict()`` into tensors and JSON.

    Per-parameter tensors (Adam's ``exp_avg``, ``exp_avg_sq``, ``step``) become
    ``{prefix}{param_index}.{name}``; non-tensor per-parameter values and ``param_groups`` go into
    the returned JSON dict.
    """
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in state_dict["state"].items():
        for name, value in st.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}{idx}.{name}"] = value
            else:
                scalars.setdefault(str(idx), {})[name] = value
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in state_dict["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def optimizer_from_flat(tensors: Mapping[str, torch.Tensor], meta: dict, prefix: str = "optim.") -> dict[str, Any]:
    """Inverse of :func:`optimizer_to_flat`: a dict for ``optimizer.load_state_dict``."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in take_prefix(tensors, prefix).items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    for idx, values in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(values)
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}


def scheduler_to_json(scheduler: Any) -> dict[str, Any]:
    """``scheduler.state_dict()`` checked to be JSON (torch and timm schedulers are)."""
    sd = scheduler.state_dict()
    try:
        return json.loads(json.dumps(sd))
    except TypeError as e:
        raise TypeError(f"{type(scheduler).__name__}.state_dict() is not JSON-serialisable: {e}") from None
