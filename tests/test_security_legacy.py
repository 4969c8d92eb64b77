"""Issue 24 item 4: a version-1 downgrade no longer bypasses the digests.

The attack: take a version-2 file, remove ``integrity``, set ``version = "1"``, put the data
section's sha256 in ``sha256`` (the checksum format 1 had), then swap two same-shape tensors'
offsets or relabel ``F32`` as ``I32``. On the old code every kind loaded with a
``LegacyCheckpointWarning`` and changed outputs (NaN after a relabel). Now version-1 adapters,
training states and every kind but ``backbone`` are refused as an older promptkit's files, and a
version-1 backbone loads only when its header is the layout safetensors writes for its data.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from _toy import ToyMSA, toy_inputs, toy_spec
from safetensors.torch import save as st_save
from test_integrity import TinyMSA, _fit, data  # noqa: F401  (the same tiny model, its data fixture and fit)
from torch import nn

import backbones
import promptkit
from promptkit.adapter_files import WEIGHTS_NAME
from promptkit.backbone_files import load_backbone, save_backbone
from promptkit.checkpoint import (
    DTYPE_SIZES,
    CheckpointError,
    LegacyCheckpointWarning,
    check_legacy_header,
    load_checkpoint,
    save_checkpoint,
)
from promptkit.modalities import ModalitySet
from promptkit.prompter import AdapterLoadError, MissingModalityPrompter

DIMS = {"text": 6, "audio": 3, "vision": 4}
Header = dict


# --- the attack, by hand ------------------------------------------------------------------------
def read_header(path: Path) -> tuple[Header, bytes]:
    blob = path.read_bytes()
    n = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8 : 8 + n]), blob[8 + n :]


def write_header(path: Path, header: Header, data: bytes) -> None:
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + data)


def downgrade(path: Path, edit: Callable[[Header], None] | None = None) -> None:
    """The issue's downgrade: no ``integrity``, ``version = "1"``, the data's sha256 as ``sha256``,
    then ``edit`` on the header (the data bytes stay as they are)."""
    header, data = read_header(path)
    info = header["__metadata__"]
    del info["integrity"]
    info["version"] = "1"
    info["sha256"] = hashlib.sha256(data).hexdigest()
    if edit is not None:
        edit(header)
    write_header(path, header, data)


def pair(header: Header, prefix: str = "") -> tuple[str, str]:
    """Two F32 tensors under ``prefix`` with one shape (the first two such, by name)."""
    by_shape: dict[tuple, list[str]] = {}
    for name, e in sorted(header.items()):
        if name != "__metadata__" and name.startswith(prefix) and e["dtype"] == "F32" and e["shape"]:
            by_shape.setdefault(tuple(e["shape"]), []).append(name)
    a, b = next(v for v in by_shape.values() if len(v) >= 2)[:2]
    return a, b


def swap(a: str, b: str) -> Callable[[Header], None]:
    def edit(header: Header) -> None:
        header[a]["data_offsets"], header[b]["data_offsets"] = header[b]["data_offsets"], header[a]["data_offsets"]

    return edit


def relabel(name: str, dtype: str = "I32") -> Callable[[Header], None]:
    def edit(header: Header) -> None:
        assert header[name]["dtype"] == "F32"
        header[name]["dtype"] = dtype

    return edit


def last_f32(header: Header) -> str:
    """The F32 tensor safetensors lays out last: relabelling it I32 keeps the dtype-then-name order."""
    return max((n for n in header if n != "__metadata__" and header[n]["dtype"] == "F32"),
               key=lambda n: header[n]["data_offsets"][0])


# --- adapters -------------------------------------------------------------------------------------
ADIMS = {"text": 12, "audio": 5, "vision": 7}


def saved_adapter(directory: Path) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    backbone = ToyMSA(ADIMS)
    prompter = promptkit.wrap(backbone, hooks=toy_spec(list(ADIMS)))
    with torch.no_grad():
        for p in prompter.adapter_state_dict().values():
            if p.is_floating_point():
                p.add_(torch.randn_like(p) * 0.1)
    prompter.eval()
    ms = ModalitySet(list(ADIMS))
    with torch.no_grad():
        out = prompter(**toy_inputs(ADIMS), mask=ms.masks_from_case_ids(torch.arange(6) % len(ms.cases)))
    prompter.save_pretrained(directory)
    prompter.unwrap()
    return backbone, out


@pytest.mark.parametrize("attack", ["downgrade only", "offset swap", "dtype relabel"])
def test_a_downgraded_adapter_is_refused_as_an_older_promptkits(tmp_path, attack):
    backbone, _ = saved_adapter(tmp_path)
    weights = tmp_path / WEIGHTS_NAME
    a, b = pair(read_header(weights)[0])
    downgrade(weights, {"downgrade only": None, "offset swap": swap(a, b), "dtype relabel": relabel(a)}[attack])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # refused outright, not loaded with a LegacyCheckpointWarning
        with pytest.raises(AdapterLoadError, match=r"adapter_model\.safetensors holds 'adapter' in checkpoint format "
                           r"version 1, written by an older promptkit.*train the prompts again"):
            MissingModalityPrompter.from_pretrained(backbone, tmp_path)


# --- training state (last.safetensors, --resume) ---------------------------------------------------
def test_a_downgraded_training_state_is_refused_and_resume_says_to_start_again(data, tmp_path):
    out = tmp_path / "run"
    _fit(data, out, epochs=1)
    last = out / "last.safetensors"
    blob = last.read_bytes()
    a, b = pair(read_header(last)[0], "model.")
    for edit in (None, swap(a, b), relabel(a)):
        last.write_bytes(blob)
        downgrade(last, edit)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(CheckpointError, match=r"last\.safetensors holds 'train-state' in checkpoint format "
                               r"version 1, written by an older promptkit.*without --resume"):
                _fit(data, out, epochs=2, resume=True)
    last.write_bytes(blob)
    assert _fit(data, out, epochs=2, resume=True).epochs_run == 2  # the intact file still resumes


def test_every_kind_but_backbone_is_refused_in_version_1(tmp_path):
    for kind in ("weights", "lora-adapter", "mpmm-attn-adapter"):
        path = save_checkpoint(tmp_path / f"{kind}.safetensors", {"w": torch.randn(3)}, {}, kind=kind)
        downgrade(path)
        with pytest.raises(CheckpointError, match=rf"holds '{kind}' in checkpoint format version 1.*only of kind "
                           r"'backbone'"):
            load_checkpoint(path)


# --- backbones: version 1 still loads, its header checked against the data ---------------------------
def small_mult(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return backbones.create_backbone("mult", feature_dims=DIMS, d_model=8, num_heads=2, layers=1).eval()


def mult_inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {m: torch.randn(3, 5, d, generator=g) for m, d in DIMS.items()}


def test_a_downgraded_backbone_loads_only_with_the_header_safetensors_writes(tmp_path):
    model = small_mult()
    path = save_backbone(model, tmp_path / "backbone.safetensors", "mult")
    blob = path.read_bytes()
    downgrade(path)  # an honest version-1 file: loads, with the warning, bit-identical
    with pytest.warns(LegacyCheckpointWarning, match=r"backbone\.safetensors was written by an older promptkit"):
        loaded = load_backbone(path)
    with torch.no_grad():
        assert torch.equal(loaded(**mult_inputs()), model(**mult_inputs()))

    header = read_header(path)[0]
    a, b = pair(header)
    path.write_bytes(blob)
    downgrade(path, swap(a, b))
    with pytest.warns(LegacyCheckpointWarning), pytest.raises(
            CheckpointError, match=rf"backbone\.safetensors is corrupt or was edited: tensor '{b}' \(header: F32 .* at "
                                   rf"data offsets \[0, \d+\]\) is stored where the layout safetensors writes puts "
                                   rf"tensor '{a}'.*offsets were swapped"):
        load_backbone(path)

    path.write_bytes(blob)
    downgrade(path, relabel(a))  # I32 sorts after every F32: out of place
    with pytest.warns(LegacyCheckpointWarning), pytest.raises(
            CheckpointError, match=rf"tensor '{a}' \(header: I32 .*\) is stored where .*a dtype relabelled"):
        load_backbone(path)

    last = last_f32(header)  # in place after a relabel: the model's own dtype refuses it
    path.write_bytes(blob)
    downgrade(path, relabel(last))
    check_legacy_header(path, {k: v for k, v in read_header(path)[0].items() if k != "__metadata__"})
    with pytest.warns(LegacyCheckpointWarning), pytest.raises(
            CheckpointError, match=rf"tensor '{last}' is torch.int32 in the file, but the model's is torch.float32"):
        load_backbone(path)

    path.write_bytes(blob)
    downgrade(path, lambda h: h[a].update(shape=[h[a]["shape"][0] * 2] + h[a]["shape"][1:]))  # size != range
    with pytest.warns(LegacyCheckpointWarning), pytest.raises(CheckpointError, match=rf"tensor '{a}'"):
        load_checkpoint(path, kind="backbone")


def test_the_layout_rule_is_the_one_the_installed_safetensors_writes():
    """The dtype order and sizes check_legacy_header assumes, against safetensors itself: one
    tensor of every dtype torch can write, under names that do not sort by dtype."""
    dtypes = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
              "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
              "BOOL": torch.bool}
    for name in ("uint16", "uint32", "uint64", "float8_e5m2", "float8_e4m3fn", "complex64"):
        if hasattr(torch, name):
            dtypes[{"uint16": "U16", "uint32": "U32", "uint64": "U64", "float8_e5m2": "F8_E5M2",
                    "float8_e4m3fn": "F8_E4M3", "complex64": "C64"}[name]] = getattr(torch, name)
    tensors = {}
    for i, (label, dt) in enumerate(sorted(dtypes.items())):
        try:
            st_save({"x": torch.zeros(2, dtype=dt)})
        except Exception:  # a dtype this safetensors cannot write: nothing to compare
            continue
        for j in range(2):
            tensors[f"{(7 * i + j) % 23:02d}_{label}"] = torch.zeros(3, j + 1, dtype=dt)
    blob = st_save(tensors)
    n = int.from_bytes(blob[:8], "little")
    entries = {k: v for k, v in json.loads(blob[8 : 8 + n]).items() if k != "__metadata__"}
    check_legacy_header("layout", entries)  # raises naming the first tensor out of place
    assert {e["dtype"] for e in entries.values()} <= set(DTYPE_SIZES)
