"""Atomic safetensors checkpoints: round trip, damaged / foreign / non-promptkit files refused
with the file named, optimizer state flattened and restored exactly. Hand-edited headers, adapter
configs and older-format files: tests/test_integrity.py."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from promptkit.checkpoint import (
    CheckpointError,
    fingerprint,
    load_checkpoint,
    optimizer_from_flat,
    optimizer_to_flat,
    save_checkpoint,
)


def net(width: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, width), nn.ReLU(), nn.Linear(width, 1))


def test_round_trip_keeps_tensors_dtypes_and_meta(tmp_path):
    tensors = {"a": torch.randn(3, 2), "b": torch.arange(5), "s": torch.tensor(2.5), "h": torch.randn(4).bfloat16()}
    tensors["view"] = tensors["a"][:, 0]  # shares storage with "a", not contiguous
    meta = {"epoch": 3, "history": [{"mae": 0.5}], "best": math.inf, "nan": math.nan, "name": "x"}
    path = save_checkpoint(tmp_path / "sub" / "c.safetensors", tensors, meta, kind="train-state")
    got, got_meta = load_checkpoint(path, kind="train-state")
    assert got.keys() == tensors.keys()
    for k in tensors:
        assert got[k].dtype == tensors[k].dtype and torch.equal(got[k], tensors[k]), k
    assert got_meta["epoch"] == 3 and got_meta["best"] == math.inf and math.isnan(got_meta["nan"])
    assert list(got_meta) == list(meta)  # key order kept (a config's modality order means something)
    assert [p.name for p in path.parent.iterdir()] == ["c.safetensors"]  # no temp file left


def test_failed_save_leaves_the_old_file_intact(tmp_path):
    path = save_checkpoint(tmp_path / "c.safetensors", {"a": torch.ones(2)}, {"v": 1})
    before = path.read_bytes()
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        save_checkpoint(path, {"a": torch.zeros(2)}, {"v": object()})
    assert path.read_bytes() == before
    assert len(list(tmp_path.iterdir())) == 1


def test_truncated_file_is_refused_naming_it(tmp_path):
    path = save_checkpoint(tmp_path / "c.safetensors", net().state_dict(), {})
    blob = path.read_bytes()
    path.write_bytes(blob[:-10])  # tensor data cut short
    with pytest.raises(CheckpointError, match=r"c\.safetensors is truncated: \d+ of \d+ bytes of tensor data"):
        load_checkpoint(path)
    path.write_bytes(blob[:100])  # header cut short
    with pytest.raises(CheckpointError, match=r"c\.safetensors is truncated or not a safetensors file"):
        load_checkpoint(path)
    path.write_bytes(blob[:5])
    with pytest.raises(CheckpointError, match=r"c\.safetensors is truncated or not a safetensors file \(5 bytes\)"):
        load_checkpoint(path)


def test_flipped_byte_in_tensor_data_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "c.safetensors", {"w": torch.zeros(64)}, {})
    blob = bytearray(path.read_bytes())
    blob[-3] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="corrupt.*checksum"):
        load_checkpoint(path)


def test_plain_safetensors_and_garbage_are_not_promptkit_checkpoints(tmp_path):
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(CheckpointError, match=r"plain\.safetensors .*not a promptkit checkpoint"):
        load_checkpoint(plain)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(CheckpointError, match=r"junk\.safetensors has a corrupt header"):
        load_checkpoint(junk)
    with pytest.raises(CheckpointError, match=r"nope\.safetensors does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")
    with pytest.raises(CheckpointError, match=r"is a directory, not a checkpoint file"):
        load_checkpoint(tmp_path)  # not "does not exist"


def test_header_with_a_key_twice_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "c.safetensors", {"a": torch.ones(2), "b": torch.zeros(2)}, {})
    blob = path.read_bytes()
    n = int.from_bytes(blob[:8], "little")
    text = blob[8 : 8 + n].decode().rstrip()
    entry = text[text.index('"a":') : text.index("}", text.index('"a":')) + 1]  # the 'a' entry, once more
    text = (text[:-1] + "," + entry + "}").encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + blob[8 + n :])
    with pytest.raises(CheckpointError, match=r"c\.safetensors has a corrupt header \(key 'a' appears twice\)"):
        load_checkpoint(path)


def test_foreign_model_checkpoint_is_refused_with_the_differences(tmp_path):
    path = save_checkpoint(tmp_path / "c.safetensors", net(4).state_dict(), {}, kind="backbone")
    load_checkpoint(path, kind="backbone", expect=net(4))  # same layout loads
    with pytest.raises(CheckpointError, match=r"different model: .*shape mismatch.*0\.weight: file \[4, 3\] vs model \[5, 3\]"):
        load_checkpoint(path, expect=net(5))
    other = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1), nn.Linear(1, 1))
    with pytest.raises(CheckpointError, match=r"model has but the file lacks, e\.g\. \['3\.bias', '3\.weight'\]"):
        load_checkpoint(path, expect=other)
    with pytest.raises(CheckpointError, match="holds 'backbone', expected a 'train-state'"):
        load_checkpoint(path, kind="train-state")


def test_fingerprint_depends_on_names_and_shapes_only():
    a = {"x": torch.zeros(2, 3), "y": torch.zeros(1)}
    assert fingerprint(a) == fingerprint({"y": (1,), "x": [2, 3]})
    assert fingerprint(a) != fingerprint({"x": torch.zeros(3, 2), "y": torch.zeros(1)})
    assert fingerprint(a) != fingerprint({"x2": torch.zeros(2, 3), "y": torch.zeros(1)})


def _steps(model, opt, n, seed):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.randn(8, 3, generator=g)
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()


@pytest.mark.parametrize("cls", [torch.optim.Adam, torch.optim.AdamW])
def test_optimizer_state_flattened_and_restored_continues_identically(tmp_path, cls):
    a = net()
    opt_a = cls(a.parameters(), lr=1e-2, betas=(0.8, 0.95))
    _steps(a, opt_a, 3, seed=1)
    tensors, meta = optimizer_to_flat(opt_a.state_dict())
    assert {k.split(".", 2)[2] for k in tensors} == {"exp_avg", "exp_avg_sq", "step"}
    path = save_checkpoint(tmp_path / "o.safetensors", {**tensors, **{f"model.{k}": v for k, v in a.state_dict().items()}},
                           {"optimizer": meta}, model_prefix="model.")
    got, got_meta = load_checkpoint(path, expect=a)

    b = net(4)
    b.load_state_dict({k[6:]: v for k, v in got.items() if k.startswith("model.")})
    opt_b = cls(b.parameters(), lr=1.0)
    opt_b.load_state_dict(optimizer_from_flat(got, got_meta["optimizer"]))
    assert opt_b.param_groups[0]["lr"] == 1e-2 and opt_b.param_groups[0]["betas"] == (0.8, 0.95)
    _steps(a, opt_a, 2, seed=2)
    _steps(b, opt_b, 2, seed=2)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
