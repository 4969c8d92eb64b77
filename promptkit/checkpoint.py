"""Atomic safetensors checkpoints: tensors plus a JSON ``meta`` dict, never pickle.

A promptkit checkpoint (format version 2) is a safetensors file whose string metadata holds

- ``format`` = ``"promptkit"`` and ``version``: refuse anything else;
- ``kind``: what the file is (``"backbone"``, ``"train-state"``, ``"adapter"``, ``"weights"``);
- ``meta``: the caller's JSON;
- ``model_prefix`` and ``fingerprint``: sha256 of the model tensors' names and shapes (those under
  ``model_prefix``), so a checkpoint of a different model is refused by name, not loaded wrongly;
- ``integrity``: JSON ``{"tensors": {name: sha256}, "metadata": {key: sha256}}``. A tensor's digest
  covers its name, its header dtype and shape and the bytes its header offsets point at, so a
  damaged byte, two same-shape tensors' offsets swapped in the header, or a dtype relabelled
  (``F32`` → ``I32``) is refused naming the tensor; each other metadata key's value is covered
  too (an edited ``kind``, ``meta`` or ``model_prefix`` is refused naming the key). safetensors
  itself refuses data bytes outside every tensor, so nothing that changes what loads is unchecked.

What the digests protect against, and what they do not: they are unkeyed sha256 sums stored in
the file itself, so they catch corruption (a torn write, a flipped bit, a truncated copy) and
careless edits (a hand-edited header, offset, dtype or metadata value) - anything that changes
what loads without also recomputing the digests. They do not authenticate the
file: anyone who can write it can recompute them, so a forger's file passes. Loading a forged
file is still only loading data (safetensors never runs code, and promptkit imports and calls
nothing a file names); trust its *weights* only as far as you trust where it came from.

Older files: version 1 (promptkit before the ``integrity`` key existed) covered the tensor bytes
with one checksum but not the header. Only backbone files of that format still load (with a
:class:`LegacyCheckpointWarning`), and only when their header is the one safetensors writes for
the data: tensors laid out in safetensors' order (dtype, then name), contiguous from offset 0,
each byte range exactly its shape times its dtype's size, so a swap of two tensors' offsets or a
relabelled dtype is refused naming the tensor. Version-1 adapters, training states and every
other kind are refused (they are retrained, or a run is started again without ``--resume``).
Loading a version-1 backbone and saving it again writes version 2.

Files are written to a temporary file in the same directory, fsynced, then ``os.replace``-d over
the target: a crash leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save
from torch import nn

from ._atomic import atomic_write_bytes

FORMAT = "promptkit"
VERSION = 2
LEGACY_VERSIONS = ("1",)
INTEGRITY_KEY = "integrity"
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


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and what is wrong."""


class LegacyCheckpointWarning(UserWarning):
    """A file in an older promptkit format was loaded under that format's weaker checks."""


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


def weights_digest(model: nn.Module) -> str:
    """sha256 (16 hex digits) of every state tensor's name, dtype, shape and values: identifies the
    weights themselves (e.g. the pre-trained backbone a prompt stage adapts)."""
    return state_digest(model.state_dict())


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """:func:`weights_digest` of a state dict (e.g. a backbone's frozen part only)."""
    h = hashlib.sha256()
    for name, t in sorted(state.items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{list(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


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
    """Format version 1's checksum: the tensor data section only (not the header)."""
    n = int.from_bytes(blob[:8], "little")
    return hashlib.sha256(blob[8 + n :]).hexdigest()


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


def _split(path: Path, blob: bytes) -> tuple[dict[str, dict[str, Any]], dict[str, str], memoryview]:
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


def _tensor_digest(name: str, entry: Mapping[str, Any], data: memoryview) -> str:
    """sha256 of a tensor's name, header dtype and shape, then the bytes its header offsets select."""
    start, end = entry["data_offsets"]
    h = hashlib.sha256(json.dumps([name, entry["dtype"], entry["shape"]], separators=(",", ":")).encode() + b"\0")
    h.update(data[start:end])
    return h.hexdigest()


def _integrity(entries: Mapping[str, Mapping[str, Any]], info: Mapping[str, str], data: memoryview) -> dict:
    """The ``integrity`` record: a digest per tensor (sorted by name) and per metadata value."""
    return {
        "tensors": {name: _tensor_digest(name, entries[name], data) for name in sorted(entries)},
        "metadata": {k: hashlib.sha256(v.encode()).hexdigest() for k, v in sorted(info.items()) if k != INTEGRITY_KEY},
    }


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
    entries, _, data = _split(path, _serialize(flat, info))
    info[INTEGRITY_KEY] = json.dumps(_integrity(entries, info, data), separators=(",", ":"))
    blob = _serialize(flat, info)
    if _split(path, blob)[0] != entries:  # the digests were taken on the first layout
        raise RuntimeError(f"safetensors laid out the tensors for {path} differently on a second serialisation")
    atomic_write_bytes(path, blob)
    return path


def _open(path: Path) -> tuple[bytes, dict[str, dict[str, Any]], dict[str, str], memoryview]:
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
    entries, info, data = _split(path, blob)
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


def _verify(path: Path, entries: Mapping[str, Mapping[str, Any]], info: Mapping[str, str], data: memoryview) -> None:
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
    got = _integrity(entries, info, data)

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


def _verify_legacy(path: Path, blob: bytes, entries: Mapping[str, Mapping[str, Any]], info: Mapping[str, str]) -> None:
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
    if _data_checksum(blob) != info.get("sha256"):
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
    blob, entries, info, data = _open(path)
    if info["version"] == str(VERSION):
        _verify(path, entries, info, data)
    else:
        _verify_legacy(path, blob, entries, info)
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


def check_layout(
    path: str | Path,
    tensors: Mapping[str, torch.Tensor],
    expect: Mapping[str, torch.Tensor | Sequence[int]] | nn.Module,
) -> None:
    """Refuse ``tensors`` (read from ``path``) whose names/shapes are not those of ``expect``, or
    whose dtype is of another family (integer, floating, complex, bool) than the tensor ``expect``
    holds under that name: ``load_state_dict`` would convert the values, not refuse them."""
    want, got = _shapes(expect), _shapes(tensors)
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
