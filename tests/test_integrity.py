"""Integrity covers everything that changes the answer, for the three kinds of file promptkit writes
(backbone checkpoints, the engine's ``last.safetensors``, prompt adapters): header edits made by
hand (two same-shape tensors' offsets swapped, a dtype relabelled, a tensor renamed, a metadata
value changed), edited adapter configs (modality order, hook paths, deleted keys), directories
where files belong; older-format files still load with a warning; round trips stay bit-identical."""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from _toy import ToyMSA, toy_inputs, toy_spec
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

import backbones
import promptkit
from backbones import MSABackbone
from promptkit.adapter_files import CONFIG_NAME, WEIGHTS_NAME
from promptkit.backbone_files import load_backbone, save_backbone
from promptkit.checkpoint import (
    CheckpointError,
    LegacyCheckpointWarning,
    fingerprint,
    load_checkpoint,
    save_checkpoint,
)
from promptkit.data import make_synthetic_mosi
from promptkit.modalities import ModalitySet
from promptkit.prompter import AdapterLoadError, MissingModalityPrompter
from promptkit.prompter.io import PROMPTER_ADAPTER
from promptkit.recipes import StageSection
from promptkit.train import fit

DIMS = {"text": 6, "audio": 3, "vision": 4}
REPO = Path(__file__).resolve().parents[1]


# --- editing a safetensors header by hand -----------------------------------------------------
def read_header(path: Path) -> tuple[dict, bytes]:
    """The parsed JSON header and the raw data section of a safetensors file."""
    blob = path.read_bytes()
    n = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8 : 8 + n]), blob[8 + n :]


def write_header(path: Path, header: dict, data: bytes) -> None:
    """Write ``header`` (padded to 8 bytes, as safetensors does) in front of ``data``."""
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + data)


def same_shape_pair(path: Path, prefix: str = "") -> tuple[str, str]:
    """Two tensors under ``prefix`` with one dtype and shape but different bytes."""
    header, data = read_header(path)
    entries = {k: v for k, v in header.items() if k != "__metadata__" and k.startswith(prefix)}
    seen: dict[tuple, str] = {}
    for name in sorted(entries):
        e = entries[name]
        key = (e["dtype"], tuple(e["shape"]))
        if key in seen and len(e["shape"]) >= 1:
            other = entries[seen[key]]
            if data[slice(*e["data_offsets"])] != data[slice(*other["data_offsets"])]:
                return seen[key], name
        seen.setdefault(key, name)
    raise AssertionError(f"{path} has no two distinct same-shape tensors under {prefix!r}")


def swap_offsets(path: Path, a: str, b: str) -> None:
    """Swap the data offsets of tensors ``a`` and ``b`` in the header; the data stays as it is."""
    header, data = read_header(path)
    assert header[a]["shape"] == header[b]["shape"] and header[a]["dtype"] == header[b]["dtype"]
    header[a]["data_offsets"], header[b]["data_offsets"] = header[b]["data_offsets"], header[a]["data_offsets"]
    write_header(path, header, data)


def relabel(path: Path, name: str, dtype: str = "I32") -> None:
    header, data = read_header(path)
    assert header[name]["dtype"] == "F32"
    header[name]["dtype"] = dtype
    write_header(path, header, data)


def edit_metadata(path: Path, key: str, value: str | None) -> None:
    header, data = read_header(path)
    if value is None:
        del header["__metadata__"][key]
    else:
        header["__metadata__"][key] = value
    write_header(path, header, data)


def raw_tensors(path: Path) -> dict[str, torch.Tensor]:
    """What plain safetensors makes of the file (no promptkit checks): proves an edit is 'silent'."""
    return st_load(path.read_bytes())


# --- the checkpoint layer -------------------------------------------------------------------
def test_offset_swap_of_two_same_shape_tensors_is_refused_naming_them(tmp_path):
    tensors = {"a": torch.randn(4, 3), "b": torch.randn(4, 3), "c": torch.arange(5)}
    path = save_checkpoint(tmp_path / "c.safetensors", tensors, {})
    swap_offsets(path, "a", "b")
    raw = raw_tensors(path)  # a valid safetensors file whose 'a' is now the old 'b'
    assert torch.equal(raw["a"], tensors["b"]) and torch.equal(raw["b"], tensors["a"])
    with pytest.raises(CheckpointError, match=r"c\.safetensors is corrupt or was edited after saving: "
                       r"tensor 'a' \(header: F32 \[4, 3\] at data offsets \[\d+, \d+\]\) does not match its stored "
                       r"checksum.*tensor 'b'"):
        load_checkpoint(path)


def test_f32_relabelled_as_i32_is_refused_naming_the_tensor(tmp_path):
    path = save_checkpoint(tmp_path / "c.safetensors", {"w": torch.randn(8), "z": torch.zeros(2)}, {})
    relabel(path, "w", "I32")
    assert raw_tensors(path)["w"].dtype == torch.int32  # safetensors itself loads it
    with pytest.raises(CheckpointError, match=r"tensor 'w' \(header: I32 \[8\].*does not match its stored checksum"):
        load_checkpoint(path)


def test_renamed_tensor_and_edited_metadata_are_refused_naming_the_key(tmp_path):
    path = save_checkpoint(tmp_path / "c.safetensors", {"w": torch.randn(3)}, {"epoch": 3}, kind="backbone")
    blob = path.read_bytes()
    header, data = read_header(path)
    header["v"] = header.pop("w")
    write_header(path, header, data)
    with pytest.raises(CheckpointError, match=r"tensor 'v' is in the header but was not saved; "
                       r"tensor 'w' was saved but the header no longer lists it"):
        load_checkpoint(path)
    for key, value, msg in [
        ("kind", "train-state", r"metadata key 'kind' does not match its stored checksum"),
        ("meta", '{"epoch": 4}', r"metadata key 'meta' does not match"),
        ("model_prefix", "x.", r"metadata key 'model_prefix' does not match"),
        ("extra", "1", r"metadata key 'extra' was added after saving"),
        ("fingerprint", None, r"metadata key 'fingerprint' was saved but is gone"),
        ("integrity", None, r"lacks the 'integrity' metadata key"),
        ("integrity", "{}", r"its 'integrity' metadata is not"),
    ]:
        path.write_bytes(blob)
        edit_metadata(path, key, value)
        with pytest.raises(CheckpointError, match=r"c\.safetensors .*" + msg):
            load_checkpoint(path, kind="backbone")
    path.write_bytes(blob)
    assert load_checkpoint(path, kind="backbone")[1] == {"epoch": 3}  # the untouched bytes still load


def same_file(a: Path, b: Path) -> bool:
    """Same header (safetensors orders the metadata map arbitrarily) and byte-identical data."""
    return read_header(a) == read_header(b)


def test_round_trip_is_bit_identical_and_resaving_reproduces_the_file(tmp_path):
    tensors = {"a": torch.randn(3, 2), "i": torch.arange(6, dtype=torch.int64), "h": torch.randn(5).half(),
               "b": torch.tensor([True, False]), "s": torch.tensor(1.5)}
    path = save_checkpoint(tmp_path / "c.safetensors", tensors, {"k": [1, 2]}, kind="weights")
    got, meta = load_checkpoint(path, kind="weights")
    for k, v in tensors.items():
        assert got[k].dtype == v.dtype and torch.equal(got[k], v), k
    again = save_checkpoint(tmp_path / "d.safetensors", got, meta, kind="weights")
    assert same_file(again, path)


def test_directory_paths_say_they_are_directories(tmp_path):
    (tmp_path / "run").mkdir()
    save_checkpoint(tmp_path / "run" / "last.safetensors", {"w": torch.zeros(1)})
    with pytest.raises(CheckpointError, match=r"checkpoint .*run is a directory, not a checkpoint file; "
                       r"it holds \['last\.safetensors'\]"):
        load_checkpoint(tmp_path / "run")
    with pytest.raises(CheckpointError, match=r"is a directory, not a checkpoint file; expected a \.safetensors file"):
        load_checkpoint(tmp_path)
    with pytest.raises(IsADirectoryError, match=r"cannot write .*run: it is a directory"):
        save_checkpoint(tmp_path / "run", {"w": torch.zeros(1)})
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["last.safetensors"]  # no temp file left behind


def write_v1(path: Path, tensors: dict[str, torch.Tensor], meta: dict, kind: str, model_prefix: str = "") -> Path:
    """A file as promptkit wrote it before format version 2 (checksum over the data section only)."""
    model = {k[len(model_prefix) :]: v for k, v in tensors.items() if k.startswith(model_prefix)}
    info = {"format": "promptkit", "version": "1", "kind": kind, "meta": json.dumps(meta),
            "model_prefix": model_prefix, "fingerprint": fingerprint(model)}
    blob = st_save(tensors, metadata=info)
    n = int.from_bytes(blob[:8], "little")
    info["sha256"] = hashlib.sha256(blob[8 + n :]).hexdigest()
    path.write_bytes(st_save(tensors, metadata=info))
    return path


def test_version_1_files_load_with_a_warning_and_keep_their_own_checks(tmp_path):
    tensors = {"w": torch.randn(4), "v": torch.randn(4)}
    path = write_v1(tmp_path / "old.safetensors", tensors, {"epoch": 2}, "backbone")
    with pytest.warns(LegacyCheckpointWarning, match=r"old\.safetensors was written by an older promptkit "
                      r"\(checkpoint format version 1\).*save it again"):
        got, meta = load_checkpoint(path, kind="backbone")
    assert meta == {"epoch": 2} and all(torch.equal(got[k], tensors[k]) for k in tensors)
    resaved = save_checkpoint(tmp_path / "new.safetensors", got, meta, kind="backbone")  # upgrades to version 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_checkpoint(resaved, kind="backbone")
    swap_offsets(resaved, "v", "w")
    with pytest.raises(CheckpointError, match="tensor 'v'"):
        load_checkpoint(resaved)

    blob = bytearray(path.read_bytes())
    blob[-2] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.warns(LegacyCheckpointWarning), pytest.raises(CheckpointError, match=r"corrupt.*checksum \('sha256'\)"):
        load_checkpoint(path)
    downgraded = save_checkpoint(tmp_path / "down.safetensors", tensors, {})
    edit_metadata(downgraded, "version", "1")
    with pytest.raises(CheckpointError, match=r"was edited: it says format version '1'.*has one"):
        load_checkpoint(downgraded)
    edit_metadata(downgraded, "version", "3")
    with pytest.raises(CheckpointError, match=r"has format version '3'; this promptkit reads 2 \(and the older 1\)"):
        load_checkpoint(downgraded)


# --- backbone checkpoints ---------------------------------------------------------------------
def small_mult(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return backbones.create_backbone("mult", feature_dims=DIMS, d_model=8, num_heads=2, layers=1).eval()


def mult_inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {m: torch.randn(3, 5, d, generator=g) for m, d in DIMS.items()}


def test_backbone_round_trip_is_bit_identical(tmp_path):
    model = small_mult()
    path = save_backbone(model, tmp_path / "backbone.safetensors", "mult")
    loaded = load_backbone(path)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    with torch.no_grad():
        assert torch.equal(loaded(**mult_inputs()), model(**mult_inputs()))


def test_backbone_offset_swap_and_dtype_relabel_are_refused(tmp_path):
    model = small_mult()
    path = save_backbone(model, tmp_path / "backbone.safetensors", "mult")
    blob = path.read_bytes()
    a, b = same_shape_pair(path)
    swap_offsets(path, a, b)
    silently = small_mult(seed=5)
    silently.load_state_dict(raw_tensors(path))  # what the edit does when nothing checks it
    with torch.no_grad():
        assert not torch.equal(silently(**mult_inputs()), model(**mult_inputs()))
    with pytest.raises(CheckpointError, match=rf"backbone\.safetensors is corrupt or was edited.*tensor '{a}'"):
        load_backbone(path)

    path.write_bytes(blob)
    relabel(path, a, "I32")
    with pytest.raises(CheckpointError, match=rf"tensor '{a}' \(header: I32"):
        load_backbone(path)
    with pytest.raises(CheckpointError, match="is a directory"):
        load_backbone(tmp_path)


def test_shipped_version_1_backbone_still_loads_with_a_warning():
    path = REPO / "recipes" / "pretrained" / "mult-synth-data0.safetensors"
    if not path.is_file():
        pytest.skip("shipped pretrained backbone not present")
    header, _ = read_header(path)
    if header["__metadata__"]["version"] != "1":
        pytest.skip("the shipped backbone has been re-saved in the current format")
    with pytest.warns(LegacyCheckpointWarning, match="mult-synth-data0.safetensors"):
        model = load_backbone(path)
    assert type(model).__name__ == "MulT"


# --- engine training state (last.safetensors, --resume) -----------------------------------------
class TinyMSA(MSABackbone):
    """Per-modality mean → Linear(width) → concat → head: several same-shape tensors to swap."""

    def __init__(self, feature_dims=DIMS, width: int = 4):
        super().__init__(feature_dims, 1, "regression")
        self.enc = nn.ModuleDict({m: nn.Linear(d, width) for m, d in feature_dims.items()})
        self.mix = nn.ModuleList([nn.Linear(width, width) for _ in range(2)])
        self.head = nn.Linear(width * len(feature_dims), 1)

    def forward(self, **features):
        h = [self.mix[1](torch.relu(self.mix[0](self.enc[m](features[m].mean(1))))) for m in self.modalities]
        return self.head(torch.cat(h, -1))


@pytest.fixture(scope="module")
def data():
    return make_synthetic_mosi(seed=0, sizes=(32, 16, 16), seq_lens={m: 3 for m in DIMS}, feature_dims=DIMS)


def _fit(data, out: Path, epochs: int, resume: bool = False):
    torch.manual_seed(0)
    stage = StageSection(epochs=epochs, batch_size=16, lr=1e-2, scheduler="plateau", seed=3)
    return fit(TinyMSA(), data, stage, out, resume=resume, progress=False, evaluate_test=False)


def _rewind(meta_json: str) -> str:
    meta = json.loads(meta_json)
    meta["state"]["epoch"] = 0
    return json.dumps(meta)


def test_resume_refuses_an_edited_last_checkpoint_and_continues_from_the_intact_one(data, tmp_path):
    out = tmp_path / "run"
    _fit(data, out, epochs=1)
    last = out / "last.safetensors"
    blob = last.read_bytes()
    a, b = same_shape_pair(last, "model.")
    edits = {
        "offset swap": lambda: swap_offsets(last, a, b),
        "dtype relabel": lambda: relabel(last, a, "I32"),
        "meta edit": lambda: edit_metadata(last, "meta", _rewind(read_header(last)[0]["__metadata__"]["meta"])),
    }
    for what, edit in edits.items():
        last.write_bytes(blob)
        edit()
        assert last.read_bytes() != blob, what
        with pytest.raises(CheckpointError, match=r"last\.safetensors is corrupt or was edited after saving"):
            _fit(data, out, epochs=2, resume=True)
    last.write_bytes(blob)
    resumed = _fit(data, out, epochs=2, resume=True)
    assert resumed.epochs_run == 2 and len(resumed.history) == 2


def test_resumed_state_file_round_trips_bit_identically(data, tmp_path):
    _fit(data, tmp_path, epochs=1)
    last = tmp_path / "last.safetensors"
    tensors, meta = load_checkpoint(last, kind="train-state")
    again = save_checkpoint(tmp_path / "again.safetensors", tensors, meta, kind="train-state", model_prefix="model.")
    assert same_file(again, last)


# --- prompt adapters --------------------------------------------------------------------------
ADIMS = {"text": 12, "audio": 5, "vision": 7}


def adapter(tmp_path: Path, seed: int = 0):
    """A trained-looking prompter saved to ``tmp_path``, its backbone, and its output on fixed inputs."""
    torch.manual_seed(seed)
    backbone = ToyMSA(ADIMS)
    prompter = promptkit.wrap(backbone, hooks=toy_spec(list(ADIMS)))
    with torch.no_grad():
        for p in prompter.adapter_state_dict().values():
            if p.is_floating_point():
                p.add_(torch.randn_like(p) * 0.1)
    prompter.eval()
    with torch.no_grad():
        expected = prompter(**inputs(), mask=mask())
    prompter.save_pretrained(tmp_path)
    return prompter.unwrap(), expected


def inputs():
    return toy_inputs(ADIMS)


def mask():
    ms = ModalitySet(list(ADIMS))
    return ms.masks_from_case_ids(torch.arange(6) % len(ms.cases))


def edit_config(directory: Path, fn) -> None:
    cfg = json.loads((directory / CONFIG_NAME).read_text())
    fn(cfg)
    (directory / CONFIG_NAME).write_text(json.dumps(cfg, indent=2))


def test_adapter_round_trip_is_bit_identical(tmp_path):
    backbone, expected = adapter(tmp_path)
    loaded = MissingModalityPrompter.from_pretrained(backbone, tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(loaded(**inputs(), mask=mask()), expected)
    loaded.save_pretrained(tmp_path / "again")
    assert (tmp_path / "again" / CONFIG_NAME).read_bytes() == (tmp_path / CONFIG_NAME).read_bytes()
    assert same_file(tmp_path / "again" / WEIGHTS_NAME, tmp_path / WEIGHTS_NAME)


def _reverse_modalities(cfg: dict) -> None:
    for section in (cfg["hook_spec"]["features"], cfg["feature_dims"]):
        items = list(section.items())[::-1]
        section.clear()
        section.update(items)


def _swap_signal_paths(cfg: dict) -> None:
    sig = cfg["hook_spec"]["signal"]
    sig["text"]["path"], sig["audio"]["path"] = sig["audio"]["path"], sig["text"]["path"]


def _swap_type_paths(cfg: dict) -> None:
    typ = cfg["hook_spec"]["type"]
    typ[0]["path"], typ[1]["path"] = typ[1]["path"], typ[0]["path"]


@pytest.mark.parametrize(
    "edit, message",
    [
        (_reverse_modalities, r"key 'hook_spec\.features' has key order \['vision', 'audio', 'text'\], "
                              r"the weights were saved with \['text', 'audio', 'vision'\]"),
        (_swap_signal_paths, r"key 'hook_spec\.signal\.text\.path' is \"proj\.audio\", the weights were saved with "
                             r"\"proj\.text\"; key 'hook_spec\.signal\.audio\.path' is \"proj\.text\""),
        (_swap_type_paths, r"key 'hook_spec\.type\[0\]\.path' is \"enc\.audio\", the weights were saved with "
                           r"\"enc\.text\""),
        (lambda cfg: cfg["prompter_config"].pop("dropout"), r"key 'prompter_config' lacks \['dropout'\]"),
        (lambda cfg: cfg["prompter_config"].update(init_std=0.5), r"key 'prompter_config\.init_std' is 0\.5"),
        (lambda cfg: cfg.update(note="hand edit"), r"the config has \['note'\], which the weights were not saved with"),
    ],
    ids=["modality-order-reversed", "signal-paths-swapped", "type-paths-swapped", "nested-key-deleted",
         "value-changed", "key-added"],
)
def test_edited_adapter_config_does_not_match_the_weights(tmp_path, edit, message):
    backbone, _ = adapter(tmp_path)
    edit_config(tmp_path, edit)
    with pytest.raises(AdapterLoadError, match=rf"promptkit_config\.json does not match the weights "
                       rf".*adapter_model\.safetensors: {message}"):
        MissingModalityPrompter.from_pretrained(backbone, tmp_path)


def test_swapped_hook_paths_would_change_outputs(tmp_path):
    """The edits the binding refuses are not cosmetic: built as the edited config says, the answer changes."""
    backbone, expected = adapter(tmp_path)
    cfg = json.loads((tmp_path / CONFIG_NAME).read_text())
    _swap_signal_paths(cfg)
    tensors, _ = load_checkpoint(tmp_path / WEIGHTS_NAME, kind="adapter")
    edited = MissingModalityPrompter(backbone, hooks=cfg["hook_spec"], config=promptkit.PrompterConfig.from_dict(
        cfg["prompter_config"]), feature_dims=cfg["feature_dims"]).eval()
    with torch.no_grad():
        for k, t in edited.adapter_state_dict().items():
            t.copy_(tensors[k])
        assert not torch.equal(edited(**inputs(), mask=mask()), expected)


@pytest.mark.parametrize("key", list(PROMPTER_ADAPTER.required))
def test_adapter_config_missing_a_required_key_is_named(tmp_path, key):
    backbone, _ = adapter(tmp_path)
    edit_config(tmp_path, lambda cfg: cfg.pop(key))
    with pytest.raises(AdapterLoadError, match=rf"promptkit_config\.json lacks required key\(s\) \['{key}'\]"):
        MissingModalityPrompter.from_pretrained(backbone, tmp_path)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("backbone_class", 3, r"key 'backbone_class' must be a JSON string, got integer 3"),
        ("hook_spec", [], r"key 'hook_spec' must be a JSON object, got array"),
        ("feature_dims", {"text": "12"}, r"key 'feature_dims\.text' must be a positive integer, got '12'"),
        ("hook_spec", {"signal": {}}, r"key 'hook_spec\.features' must be a non-empty JSON object"),
    ],
)
def test_adapter_config_with_a_wrong_type_is_named(tmp_path, key, value, message):
    backbone, _ = adapter(tmp_path)
    edit_config(tmp_path, lambda cfg: cfg.update({key: value}))
    with pytest.raises(AdapterLoadError, match=rf"promptkit_config\.json: {message}"):
        MissingModalityPrompter.from_pretrained(backbone, tmp_path)
    (tmp_path / CONFIG_NAME).write_text("[1, 2]")
    with pytest.raises(AdapterLoadError, match=r"promptkit_config\.json holds a JSON array, expected an object"):
        MissingModalityPrompter.from_pretrained(backbone, tmp_path)


def test_adapter_weights_offset_swap_and_relabel_are_refused(tmp_path):
    backbone, _ = adapter(tmp_path)
    weights = tmp_path / WEIGHTS_NAME
    blob = weights.read_bytes()
    a, b = same_shape_pair(weights)
    swap_offsets(weights, a, b)
    with pytest.raises(AdapterLoadError, match=rf"adapter_model\.safetensors is corrupt or was edited.*tensor '{a}'"):
        MissingModalityPrompter.from_pretrained(backbone, tmp_path)
    weights.write_bytes(blob)
    relabel(weights, a, "I32")
    with pytest.raises(AdapterLoadError, match=rf"tensor '{a}' \(header: I32"):
        MissingModalityPrompter.from_pretrained(backbone, tmp_path)


def test_weights_from_another_save_do_not_match_the_config(tmp_path):
    backbone, _ = adapter(tmp_path / "a")
    torch.manual_seed(1)
    other = promptkit.wrap(ToyMSA(ADIMS), hooks=toy_spec(list(ADIMS)), config=promptkit.PrompterConfig(prompt_length=4))
    other.save_pretrained(tmp_path / "b")
    shutil.copy(tmp_path / "b" / WEIGHTS_NAME, tmp_path / "a" / WEIGHTS_NAME)
    with pytest.raises(AdapterLoadError, match=r"does not match the weights.*"
                       r"key 'prompter_config\.prompt_length' is 16, the weights were saved with 4"):
        MissingModalityPrompter.from_pretrained(backbone, tmp_path / "a")


def test_re_saved_weights_keep_their_binding_and_missing_tensors_are_named(tmp_path):
    backbone, _ = adapter(tmp_path)
    weights = tmp_path / WEIGHTS_NAME
    tensors, meta = load_checkpoint(weights, kind="adapter")
    tensors.pop("signal_prompts.real.audio")
    save_checkpoint(weights, tensors, meta, kind="adapter")
    with pytest.raises(AdapterLoadError, match=r"missing tensors \['signal_prompts.real.audio'\]"):
        MissingModalityPrompter.from_pretrained(backbone, tmp_path)
    save_checkpoint(weights, tensors, {"format": meta["format"]}, kind="adapter")  # the config copy dropped
    with pytest.raises(AdapterLoadError, match=r"does not match the weights .*carry no copy of the config"):
        MissingModalityPrompter.from_pretrained(backbone, tmp_path)


def test_adapter_paths_that_are_directories_or_files_are_named(tmp_path):
    backbone, _ = adapter(tmp_path / "ad")
    with pytest.raises(AdapterLoadError, match=r"adapter_model\.safetensors is a file, not an adapter directory"):
        MissingModalityPrompter.from_pretrained(backbone, tmp_path / "ad" / WEIGHTS_NAME)
    with pytest.raises(AdapterLoadError, match=r"adapter directory .*nope does not exist"):
        MissingModalityPrompter.from_pretrained(backbone, tmp_path / "nope")
    (tmp_path / "ad" / CONFIG_NAME).unlink()
    (tmp_path / "ad" / CONFIG_NAME).mkdir()
    with pytest.raises(AdapterLoadError, match=r"promptkit_config\.json is a directory, expected a file"):
        MissingModalityPrompter.from_pretrained(backbone, tmp_path / "ad")
    with pytest.raises(NotADirectoryError, match=r"adapter_model\.safetensors: it is a file, expected a directory"):
        promptkit.wrap(backbone, hooks=toy_spec(list(ADIMS))).save_pretrained(tmp_path / "ad" / WEIGHTS_NAME)


def test_format_1_adapter_is_refused_as_an_older_promptkits(tmp_path):
    """Issue 24 item 4: a format-1 adapter (config not bound, weights' header unchecked) once loaded
    with a warning; now it is refused, saying what wrote it and how to get a current one."""
    backbone, _ = adapter(tmp_path)
    cfg = json.loads((tmp_path / CONFIG_NAME).read_text())
    tensors, _ = load_checkpoint(tmp_path / WEIGHTS_NAME, kind="adapter")
    cfg["format"] = "promptkit-adapter/1"  # as the previous promptkit wrote the pair
    (tmp_path / CONFIG_NAME).write_text(json.dumps(cfg, indent=2))
    write_v1(tmp_path / WEIGHTS_NAME, tensors, {"format": "promptkit-adapter/1"}, "adapter")
    with pytest.raises(AdapterLoadError, match=r"promptkit_config\.json has format 'promptkit-adapter/1', written by "
                       r"an older promptkit, which this promptkit no longer loads.*train the prompts again"):
        MissingModalityPrompter.from_pretrained(backbone, tmp_path)
    edit_config(tmp_path, lambda c: c.update(format="promptkit-adapter/9"))
    with pytest.raises(AdapterLoadError, match=r"has format 'promptkit-adapter/9', expected 'promptkit-adapter/2'"):
        MissingModalityPrompter.from_pretrained(backbone, tmp_path)
