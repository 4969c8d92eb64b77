"""benchmarks.ablation: variants reset to the paper's settings, scored on the validation split, resumable."""

from __future__ import annotations

import json

from benchmarks import ablation
from promptkit.recipes import load, load_recipe_data
from promptkit.train.pretrain import pretrain

TINY = """
name = "tiny-ablation"
[backbone]
name = "mult"
[backbone.config]
d_model = 10
num_heads = 2
layers = 1
[data]
source = "synthetic"
sizes = { train = 32, valid = 40, test = 16 }
[data.synthetic]
seq_lens = { text = 4, audio = 5, vision = 6 }
[pretrain]
epochs = 1
batch_size = 16
checkpoint = "backbone-{seed}.safetensors"
[prompt]
epochs = 1
batch_size = 16
prompt_lr = 0.5
[prompt.prompter]
prompt_length = 4
init_scale = "data"
"""


def test_ablation_scores_validation_and_compares_with_head_only(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
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
