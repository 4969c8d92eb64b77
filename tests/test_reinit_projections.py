"""Cross-feature-space transfer: ``[prompt] reinit_projections`` re-initialises the frozen backbone's
input projections for the target's feature sizes; everything else stays bit-identical."""

from __future__ import annotations

import pytest
import torch
from _helpers import tiny_recipe_dict

import backbones
from promptkit.backbone_files import check_backbone_fits, load_backbone, save_backbone, transfer_backbone
from promptkit.data import load_data
from promptkit.experiment.pipeline import run_pipeline
from promptkit.hookspec import hook_spec_for
from promptkit.methods import get_method
from promptkit.projections import input_projections, with_projections_trainable
from promptkit.recipes import from_dict
from promptkit.train.pretrain import transfer

TARGET_DIMS = {"text": 12, "audio": 7, "vision": 9}
SOURCE_DIMS = {"text": 300, "audio": 5, "vision": 20}
TINY = {"d_model": 10, "num_heads": 2, "layers": 1}


def _recipe(reinit: bool = True, methods=("mplmm",), **prompt):
    d = tiny_recipe_dict(prompt={"epochs": 2, "batch_size": 16, "eta": 0.7, "reinit_projections": reinit,
                                 "methods": list(methods), **prompt},
                         eval={"missing_rates": [0.5]})
    d["data"]["synthetic"]["feature_dims"] = dict(TARGET_DIMS)
    return from_dict(d)


def _target():
    return load_data("synthetic", sizes=(32, 16, 16), seq_lens={"text": 4, "audio": 4, "vision": 4},
                     feature_dims=TARGET_DIMS)


@pytest.fixture
def source_file(tmp_path):
    torch.manual_seed(0)
    model = backbones.create_backbone("mult", feature_dims=SOURCE_DIMS, **TINY)
    return save_backbone(model, tmp_path / "source.safetensors", "mult")


def test_shipped_backbones_say_which_inputs_are_projected():
    mult = backbones.create_backbone("mult", feature_dims=SOURCE_DIMS, **TINY)
    assert input_projections(mult, hook_spec_for(mult)) == {m: f"proj.{m}" for m in SOURCE_DIMS}
    for name in ("misa", "mmim", "unimse"):  # LSTMs read their audio and vision: refused, naming them
        model = backbones.create_backbone(name, feature_dims=SOURCE_DIMS)
        with pytest.raises(ValueError, match=r"none for .*audio .*vision"):
            input_projections(model, hook_spec_for(model))


def test_a_checkpoint_of_other_feature_sizes_loads_only_with_the_option(source_file):
    data = _target()
    with pytest.raises(ValueError, match="feature_dims"):
        check_backbone_fits(load_backbone(source_file, recipe=_recipe(False)), data, "backbone")
    model, fresh = transfer_backbone(source_file, data, recipe=_recipe())
    assert model.feature_dims == TARGET_DIMS
    assert sorted(fresh) == [f"proj.{m}.weight" for m in sorted(TARGET_DIMS)]
    source = load_backbone(source_file).state_dict()
    for key, value in model.state_dict().items():  # every other tensor as the file has it
        if key not in fresh:
            assert torch.equal(value, source[key]), key
    again, _ = transfer_backbone(source_file, data, recipe=_recipe())  # seeded by [prompt] seed
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())


def test_transfer_trains_projections_and_head_only(source_file, tmp_path):
    data, recipe = _target(), _recipe()
    start, fresh = transfer_backbone(source_file, data, recipe=recipe)
    out = transfer(recipe, data, source_file, tmp_path / "transfer", progress=False)
    trained = load_backbone(out, recipe=recipe)
    check_backbone_fits(trained, data, "transferred")  # now in the target's feature space
    changed = {k for k, v in trained.state_dict().items() if not torch.equal(v, start.state_dict()[k])}
    assert changed and all(k.startswith(("proj.", "head.")) for k in changed), changed
    assert any(k.startswith("proj.") for k in changed) and any(k.startswith("head.") for k in changed)


def test_frozen_methods_train_the_projections_and_count_them(source_file, tmp_path):
    data, recipe = _target(), _recipe()
    start = transfer(recipe, data, source_file, tmp_path / "transfer", progress=False)
    before = load_backbone(start, recipe=recipe).state_dict()
    done = get_method("mplmm")(recipe, data, start, tmp_path / "prompt", progress=False)
    prompter = done.modules["prompter"]
    after = prompter.backbone.state_dict()
    for key, value in after.items():
        if key.startswith(("proj.", "head.")):
            continue
        assert torch.equal(value, before[key]), f"frozen tensor {key} changed"
    for part in ("proj.", "head."):  # both trained by the prompt stage
        assert any(not torch.equal(after[k], before[k]) for k in after if k.startswith(part)), part
    proj = sum(p.numel() for m in TARGET_DIMS for p in prompter.backbone.proj[m].parameters())
    head = sum(p.numel() for p in prompter.backbone.head.parameters())
    summary = done.info["trainable"]
    in_backbone = sum(p.numel() for p in prompter.backbone.parameters() if p.requires_grad)
    assert in_backbone == proj + head  # the projections train with the head, nothing else of the backbone
    assert summary["trainable_params"] == in_backbone + sum(
        p.numel() for n, p in prompter.named_parameters() if p.requires_grad and not n.startswith("backbone."))
    spec = with_projections_trainable(prompter.backbone, hook_spec_for(prompter.backbone))
    assert [f"proj.{m}" for m in TARGET_DIMS] == spec.trainable[1:]


@pytest.mark.parametrize("reinit", [False, True])
def test_run_with_reinit_projections_end_to_end(source_file, tmp_path, reinit):
    d = tiny_recipe_dict(prompt={"epochs": 1, "batch_size": 16, "reinit_projections": reinit,
                                 "methods": ["mplmm", "head_only", "ms_zero", "lb"]},
                         pretrain={"epochs": 1, "batch_size": 16, "checkpoint": str(source_file)},
                         eval={"missing_rates": [0.5]})
    d["data"]["synthetic"]["feature_dims"] = dict(TARGET_DIMS)
    recipe = from_dict(d)
    if not reinit:  # a backbone of other feature sizes is refused before anything trains
        with pytest.raises(ValueError, match="expects feature_dims"):
            run_pipeline(recipe, _target(), tmp_path / "run", progress=False)
        assert not (tmp_path / "run" / "prompt").exists()
        return
    summary = run_pipeline(recipe, _target(), tmp_path / "run", progress=False)
    assert summary["backbone"]["transfer"].endswith("backbone.safetensors")
    shares = summary["trainable"]
    assert shares["head_only"]["trainable_params"] > sum(
        p.numel() for p in load_backbone(summary["backbone"]["transfer"]).head.parameters())
    assert set(summary["results"]) == {"zero_filled", "mplmm", "head_only", "ms_zero", "lb"}
