"""benchmarks.ablation: variants reset to the paper's settings, scored on the validation split, resumable."""

from __future__ import annotations

import json

from _helpers import tiny_recipe_toml, write_recipe

from benchmarks import ablation
from promptkit.recipes import load, load_recipe_data
from promptkit.train.pretrain import pretrain

# valid (40) and test (16) sizes differ, so a record of the wrong split shows
TINY = tiny_recipe_toml(
    name="tiny-ablation", sizes=(32, 40, 16), seq_lens=(4, 5, 6),
    pretrain={"epochs": 1, "batch_size": 16, "checkpoint": "backbone-{seed}.safetensors"},
    prompt={"epochs": 1, "batch_size": 16, "prompt_lr": 0.5, "prompter": {"prompt_length": 4, "init_scale": "data"}},
)


def test_ablation_scores_validation_and_compares_with_head_only(tmp_path):
    path = write_recipe(tmp_path, TINY, "tiny.toml")
    recipe = load(path)
    import dataclasses

    pre = recipe.replace(pretrain=dataclasses.replace(recipe.pretrain, checkpoint=None))
    pretrain(pre, load_recipe_data(pre), tmp_path / "pre", progress=False)
    (tmp_path / "pre" / "backbone.safetensors").rename(tmp_path / "backbone-0.safetensors")

    argv = ["--recipe", str(path), "--variants", "head_only,base,prompt_lr_1e-2", "--seeds", "0",
            "--work", str(tmp_path / "work"), "--out", str(tmp_path)]
    payload = ablation.main(argv)
    s = payload["summary"]
    assert payload["split"] == "valid" and set(s) == {"head_only", "base", "prompt_lr_1e-2"}
    assert "vs_head_only" in s["base"] and "vs_head_only" not in s["head_only"]
    record = json.loads((tmp_path / "work" / "base" / "s0" / "valid.json").read_text())
    assert len(record["labels"]) == 40  # the validation split, not the test split (16)
    # variants start from the paper's settings, not the recipe's chosen prompt_lr / init
    base = ablation.variant_recipe(recipe, ablation.VARIANTS["base"], 0)
    assert base.prompt.prompt_lr is None and base.prompt.prompter["init_scale"] == "fixed"
    # a second start reads the finished runs back
    record["valid"]["cases"]["avg"]["non0_acc2"] = 0.5
    (tmp_path / "work" / "base" / "s0" / "valid.json").write_text(json.dumps(record))
    again = ablation.main(argv)
    assert again["summary"]["base"]["avg"]["mean"] == 50.0
    assert json.loads((tmp_path / "ablation.json").read_text())["summary"]["base"]["avg"]["mean"] == 50.0
