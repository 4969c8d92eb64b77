"""A backbone file is data, never code (issue 24, item 1): loading one never imports or calls a
factory the file names. A registered backbone rebuilds from the file; a factory-built one needs its
factory from the caller (``factory=`` or a recipe), and a caller's factory that is not the one the
file records is refused. The factory modules here leave a marker file when they are imported."""

from __future__ import annotations

import importlib
import sys
import uuid
from pathlib import Path

import pytest
import torch
from _helpers import TINY_MULT

import backbones
from promptkit.backbone_files import load_backbone, save_backbone
from promptkit.checkpoint import CheckpointError, save_checkpoint
from promptkit.recipes import from_dict

DIMS = {"text": 3, "audio": 2}
CONFIG = {"feature_dims": DIMS, "out_dim": 1}


def marker_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """A module on ``sys.path`` (in ``tmp_path``) that writes ``<tmp_path>/imported.marker`` when it is
    imported; ``build(feature_dims, out_dim)`` returns a seeded ``nn.Linear``. Returns its name and
    the marker's path (absent until something imports the module)."""
    name = f"pk_marker_{uuid.uuid4().hex[:10]}"
    marker = tmp_path / "imported.marker"
    (tmp_path / f"{name}.py").write_text(
        "from pathlib import Path\n"
        "import torch\n"
        f"Path({str(marker)!r}).write_text('imported')\n"
        "def build(feature_dims, out_dim=1):\n"
        "    torch.manual_seed(0)\n"
        "    return torch.nn.Linear(sum(feature_dims.values()), out_dim)\n"
        "def build_other(feature_dims, out_dim=1):\n"
        "    return build(feature_dims, out_dim)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    monkeypatch.delitem(sys.modules, name, raising=False)
    return name, marker


def test_a_factory_named_by_the_file_is_never_imported(tmp_path, monkeypatch):
    """Before: load_backbone(path) imported the module the file names (the marker appeared)."""
    name, marker = marker_module(tmp_path, monkeypatch)
    path = save_checkpoint(tmp_path / "backbone.safetensors", {"weight": torch.zeros(1, 5), "bias": torch.zeros(1)},
                           {"factory": f"{name}:build", "config": CONFIG}, kind="backbone")
    with pytest.raises(CheckpointError, match=rf"backbone\.safetensors was built by factory '{name}:build' "
                                              r"\(recorded in the file\); promptkit never imports or calls code a "
                                              r"file names, so pass the factory yourself"):
        load_backbone(path)
    assert not marker.exists() and name not in sys.modules


def test_a_subprocess_factory_in_a_file_runs_nothing(tmp_path):
    """The issue's case: before, ``touch`` ran and only then 'returned a CompletedProcess' was raised."""
    ran = tmp_path / "ran.marker"
    path = save_checkpoint(tmp_path / "evil.safetensors", {"w": torch.zeros(1)},
                           {"factory": "subprocess:run", "config": {"args": ["touch", str(ran)]}}, kind="backbone")
    with pytest.raises(CheckpointError, match=r"evil\.safetensors was built by factory 'subprocess:run'"):
        load_backbone(path)
    # a caller naming another factory is refused before anything is imported or called
    with pytest.raises(CheckpointError, match=r"saved from factory 'subprocess:run', but the caller gives factory "
                                              r"'os:getcwd'"):
        load_backbone(path, factory="os:getcwd")
    assert not ran.exists()


def test_the_callers_factory_rebuilds_the_file_and_must_be_the_recorded_one(tmp_path, monkeypatch):
    name, marker = marker_module(tmp_path, monkeypatch)
    module = importlib.import_module(name)  # the caller's own code, imported by the caller
    model = module.build(DIMS)
    with torch.no_grad():
        model.weight.add_(1.0)
    path = save_backbone(model, tmp_path / "b.safetensors", factory=f"{name}:build", config=CONFIG)
    for given in (f"{name}:build", module.build):  # a factory string or the callable itself
        loaded = load_backbone(path, factory=given)
        assert torch.equal(loaded.weight, model.weight) and not loaded.training
    with pytest.raises(CheckpointError, match=rf"saved from factory '{name}:build', but the caller gives factory "
                                              rf"'{name}:build_other'; a checkpoint fits only the backbone"):
        load_backbone(path, factory=module.build_other)
    with pytest.raises(ValueError, match=r"got a int, expected a 'package.module:function' string or the callable"):
        load_backbone(path, factory=3)
    # a recipe naming the same factory rebuilds it too; a recipe and factory= that disagree are refused
    recipe = from_dict({"backbone": {"factory": f"{name}:build"}, "data": {"source": "synthetic"}})
    assert torch.equal(load_backbone(path, recipe=recipe).weight, model.weight)
    with pytest.raises(ValueError, match=rf"factory='{name}:build_other' disagrees with recipe"):
        load_backbone(path, recipe=recipe, factory=f"{name}:build_other")


def test_a_registered_backbone_file_loads_alone_and_refuses_a_callers_factory(tmp_path):
    model = backbones.create_backbone("mult", feature_dims={"text": 6, "audio": 3, "vision": 4},
                                      **TINY_MULT["config"])
    path = save_backbone(model, tmp_path / "m.safetensors", "mult")
    assert type(load_backbone(path)).__name__ == "MulT"
    with pytest.raises(CheckpointError, match=r"saved from backbone 'mult' \(a registered one\), but the caller "
                                              r"gives factory 'os:getcwd'"):
        load_backbone(path, factory="os:getcwd")


@pytest.mark.parametrize("key, value, want", [("factory", {"call": "os:system"}, "str"), ("config", [1], "dict")])
def test_meta_of_the_wrong_type_is_refused_naming_the_key(tmp_path, key, value, want):
    meta = {"factory": "os:getcwd", "config": {}, key: value}
    path = save_checkpoint(tmp_path / "odd.safetensors", {"w": torch.zeros(1)}, meta, kind="backbone")
    with pytest.raises(CheckpointError, match=rf"odd\.safetensors: meta '{key}' is a .*, expected a {want}"):
        load_backbone(path, factory="os:getcwd")


def test_a_files_config_sizes_no_model_until_it_fits_the_files_tensors(tmp_path, monkeypatch):
    """A registered-name file chooses the builder's config: before, ``d_model = 3000`` in the meta of a
    tiny file made loading allocate the whole wide model before the layout check refused it. Now the
    model is built on the meta device first, and only a config that fits the file's tensors is
    built for real."""
    small = backbones.create_backbone("mult", feature_dims=DIMS, **TINY_MULT["config"])
    wide = {**small.config(), "d_model": 3000, "num_heads": 1}
    path = tmp_path / "wide.safetensors"
    save_checkpoint(path, small.state_dict(), {"backbone": "mult", "config": wide}, kind="backbone")
    real_builds = []
    create = backbones.create_backbone

    def spy(name, **cfg):
        model = create(name, **cfg)
        real_builds.extend(p.numel() for p in model.parameters() if not p.is_meta)
        return model

    monkeypatch.setattr(backbones, "create_backbone", spy)
    with pytest.raises(CheckpointError, match="belongs to a different model"):
        load_backbone(path)
    assert real_builds == []  # nothing of the wide model was allocated
    good = tmp_path / "good.safetensors"
    save_backbone(small, good, "mult")
    assert sum(p.numel() for p in load_backbone(good).parameters()) == sum(p.numel() for p in small.parameters())
    assert real_builds  # a file whose config fits is built for real
