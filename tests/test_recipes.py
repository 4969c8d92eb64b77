"""TOML recipes: shipped recipes load; unknown keys, wrong types, unknown backbones, bad ranges and
corrupt TOML are errors that name the file, section and key."""

from __future__ import annotations

import pytest
from _helpers import FOREIGN_HOOKS, TINY_MULT, tiny_recipe_toml, write_recipe

from promptkit import recipes
from promptkit.recipes import Recipe, RecipeError, from_dict, load, load_recipe_data

# a MulT recipe on 8 / 4 / 4 synthetic samples of 3 steps; its text ends in [pretrain]
SMALL = dict(sizes=(8, 4, 4), seq_lens=(3, 3, 3), pretrain={"epochs": 1})
TINY = tiny_recipe_toml(**SMALL)


@pytest.mark.parametrize("name", ["mult-synth", "mult-mosi"])
def test_shipped_recipes_load(name):
    r = load(recipes.RECIPE_DIR / f"{name}.toml")
    assert r.backbone.name == "mult" and r.name == name and r.description
    assert r.prompt.eta == 0.7 and r.pretrain.grad_clip == 0.8
    assert load(name) == r  # by name too
    assert from_dict(r.to_dict()) == r


def test_mult_mosi_has_the_published_settings():
    r = load("mult-mosi")
    assert (r.prompt.batch_size, r.prompt.lr, r.prompt.epochs, r.prompt.optimizer) == (64, 1e-3, 30, "adam")
    assert r.backbone.config["d_model"] == 30 and r.backbone.config["num_heads"] == 5 and r.backbone.config["layers"] == 5
    assert r.prompt.scheduler == "plateau" and r.prompt.plateau_patience == 10 and r.prompt.plateau_factor == 0.1
    assert r.data.source == "file" and r.data.path is None
    with pytest.raises(RecipeError, match="no path is given; pass --data PATH"):
        load_recipe_data(r)


def test_defaults_and_int_widens_to_float(tmp_path):
    r = load(write_recipe(tmp_path, TINY + "lr = 1\n"))
    assert r.pretrain.lr == 1.0 and isinstance(r.pretrain.lr, float)
    assert r.prompt == recipes.PromptSection() and r.cggm is None
    assert r.hash() == load(write_recipe(tmp_path, TINY + "lr = 1.0\n", "s.toml")).hash()


def test_unknown_key_names_section_allowed_keys_and_suggestion(tmp_path):
    p = write_recipe(tmp_path, TINY + "learning_rate = 0.1\n")
    with pytest.raises(RecipeError) as e:
        load(p)
    msg = str(e.value)
    assert str(p) in msg and "unknown key 'learning_rate' in [pretrain]" in msg
    assert "did you mean 'lr'?" in msg and "allowed: epochs, batch_size, lr" in msg
    with pytest.raises(RecipeError, match=r"unknown key 'pretrian' in the top level; did you mean 'pretrain'\?"):
        load(write_recipe(tmp_path, TINY.replace("[pretrain]", "[pretrian]")))
    with pytest.raises(RecipeError, match=r"unknown key 'ssed' in \[eval\]; did you mean 'seed'\?"):
        load(write_recipe(tmp_path, TINY + "[eval]\nssed = 1\n"))


def test_wrong_type_names_expected_type(tmp_path):
    with pytest.raises(RecipeError, match=r"\[pretrain\] epochs must be an integer, got '3' \(str\)"):
        load(write_recipe(tmp_path, TINY.replace("epochs = 1", 'epochs = "3"')))
    with pytest.raises(RecipeError, match=r"\[pretrain\] batch_size must be an integer, got 2.5"):
        load(write_recipe(tmp_path, TINY + "batch_size = 2.5\n"))
    with pytest.raises(RecipeError, match=r"\[data\] aligned must be true or false, got 1"):
        load(write_recipe(tmp_path, TINY.replace('source = "synthetic"', 'source = "synthetic"\naligned = 1')))
    with pytest.raises(RecipeError, match=r"\[eval\] missing_rates\[1\] must be a number, got 'x'"):
        load(write_recipe(tmp_path, TINY + "[eval]\nmissing_rates = [0.1, 'x']\n"))
    with pytest.raises(RecipeError, match=r"optimizer must be one of 'adam', 'adamw', got 'sgd'"):
        load(write_recipe(tmp_path, TINY + 'optimizer = "sgd"\n'))
    with pytest.raises(RecipeError, match=r"\[backbone\] config must be a table"):
        load(write_recipe(tmp_path, '[backbone]\nname = "mult"\nconfig = 3\n'))


def test_unknown_backbone_lists_known_ones(tmp_path):
    with pytest.raises(RecipeError, match=r"unknown backbone 'mulT'.*did you mean 'mult'\?.*known backbones: \[.*'mult'"):
        load(write_recipe(tmp_path, TINY.replace('name = "mult"', 'name = "mulT"')))
    with pytest.raises(RecipeError, match=r"a model of your own goes in \[backbone\] factory"):
        load(write_recipe(tmp_path, TINY.replace('name = "mult"', 'name = "mine"')))


FACTORY = tiny_recipe_toml(**SMALL, backbone={"factory": "_foreign_pkg.models:build", "config": {"dim": 4}}) + \
    FOREIGN_HOOKS.replace('audio = "proj.audio"', 'audio = { path = "proj.audio", layout = "BTD" }')


def test_factory_recipe_with_hooks_round_trips(tmp_path):
    from promptkit.hookspec import HookSpec

    r = load(write_recipe(tmp_path, FACTORY))
    assert r.backbone.name is None and r.backbone.factory == "_foreign_pkg.models:build"
    assert r.backbone.config == {"dim": 4} and r.backbone.label == "_foreign_pkg.models:build"
    assert r.backbone.identity() == {"factory": "_foreign_pkg.models:build"}
    assert r.hooks["signal"]["audio"] == {"path": "proj.audio", "layout": "BTD"}  # kept as written
    spec = r.hook_spec()
    assert isinstance(spec, HookSpec) and spec.modalities == ("text", "audio", "vision")
    assert spec.signal["text"].path == "proj.text" and [t.path for t in spec.type] == ["enc.text", "enc.audio", "enc.vision"]
    assert r.hook_spec() is not spec and r.hooks["signal"]["text"] == "proj.text"  # parsing leaves the table as is
    assert from_dict(r.to_dict()) == r
    named = load(write_recipe(tmp_path, TINY, "n.toml"))
    assert named.backbone.identity() == {"backbone": "mult"} and named.hook_spec() is None
    assert r.hash() != named.hash()


def test_default_backbone_is_mult_unless_a_factory_is_given():
    assert recipes.BackboneSection().name == "mult" and recipes.BackboneSection().factory is None
    assert recipes.BackboneSection(factory="pkg.mod:build").name is None


def test_factory_is_imported_only_when_a_run_builds_the_backbone(tmp_path):
    """Issue 24 item 3: load imported the factory (with check_backbone); now only building does."""
    from promptkit.backbone_files import build_backbone

    p = write_recipe(tmp_path, FACTORY.replace("_foreign_pkg.models:build", "no_such_pkg_q.models:build"))
    r = load(p, check_backbone=False)  # e.g. `promptkit recipes list`
    assert r.backbone.factory == "no_such_pkg_q.models:build"
    r = load(p)
    with pytest.raises(RecipeError, match=rf"recipe {p}: \[backbone\] factory 'no_such_pkg_q.models:build': cannot "
                                          r"import module 'no_such_pkg_q.models' \(No module named 'no_such_pkg_q'\)"):
        build_backbone(r, load_recipe_data(r))
    bad = write_recipe(tmp_path, FACTORY.replace("_foreign_pkg.models:build", "no colon"), "bad.toml")
    with pytest.raises(RecipeError, match=r"\[backbone\] factory 'no colon': must have the form 'package.module:function'"):
        load(bad, check_backbone=False)
    with pytest.raises(RecipeError, match=r"\[backbone\] factory must be a string, got 3"):
        load(write_recipe(tmp_path, FACTORY.replace('"_foreign_pkg.models:build"', "3"), "int.toml"))
    with pytest.raises(RecipeError, match=r"\[hooks\] must be a table, got 'x'|hooks must be a table"):
        load(write_recipe(tmp_path, 'hooks = "x"\n' + TINY, "h.toml"))


def test_corrupt_toml_names_file_and_line(tmp_path):
    p = write_recipe(tmp_path, TINY + "[eval\nseed = 1\n")
    line = TINY.count("\n") + 1  # the line of "[eval"
    with pytest.raises(RecipeError, match=rf"{p}.* is not valid TOML: .*line {line}, column 6"):
        load(p)
    with pytest.raises(RecipeError, match="not found .*shipped: .*mult-synth"):
        load(tmp_path / "missing.toml")


def test_values_out_of_range_and_contradictions(tmp_path):
    for extra, match in [
        ("epochs = 0", r"\[pretrain\] epochs must be >= 1, got 0"),
        ("[prompt]\neta = 1.5", r"\[prompt\] eta must lie in \[0, 1\], got 1.5"),
        ("[eval]\nmissing_rates = [0.2, 1.2]", r"missing_rates must lie in \[0, 1\], got \[1.2\]"),
    ]:
        with pytest.raises(RecipeError, match=match):
            load(write_recipe(tmp_path, TINY.replace("epochs = 1", "") + extra + "\n"))
    with pytest.raises(RecipeError, match=r"metric 'mosei2' is unknown; did you mean 'mosei'\?"):
        load(write_recipe(tmp_path, TINY.replace('source = "synthetic"', 'source = "synthetic"\nmetric = "mosei2"')))
    with pytest.raises(RecipeError, match=r"\[backbone.config\] must not set 'feature_dims'.*\[data\] feature_dims"):
        load(write_recipe(tmp_path, tiny_recipe_toml(**SMALL, backbone={
            "name": "mult", "config": {**TINY_MULT["config"], "feature_dims": {"text": 3}}})))
    with pytest.raises(RecipeError, match="path 'x.pkl' is set but source is 'synthetic'"):
        load(write_recipe(tmp_path, TINY.replace('source = "synthetic"', 'source = "synthetic"\npath = "x.pkl"')))


def test_passthrough_tables_are_checked_by_their_owners_at_load(tmp_path):
    with pytest.raises(RecipeError, match=r"\[prompt.prompter\]: unknown PrompterConfig key\(s\) \['prompt_len'\]"):
        load(write_recipe(tmp_path, TINY + "[prompt.prompter]\nprompt_len = 4\n"))
    with pytest.raises(RecipeError, match=r"recipe\.toml: \[cggm\]: CGGMConfig.rho must be a number > 0"):
        load(write_recipe(tmp_path, TINY + "[cggm]\nrho = -1.0\n"))


def test_passthrough_tables_and_data_loading(tmp_path):
    r = load(write_recipe(tmp_path, TINY + "[prompt.prompter]\nprompt_length = 4\n[cggm]\nrho = 1.3\n"))
    assert r.prompt.prompter == {"prompt_length": 4} and r.cggm == {"rho": 1.3}
    data = load_recipe_data(r)
    assert {s: len(d) for s, d in data.splits.items()} == {"train": 8, "valid": 4, "test": 4}
    assert data.seq_lens == {"text": 3, "audio": 3, "vision": 3} and "synthetic" in data.description
    source = load_recipe_data(r, domain="source")
    assert not (source.splits["train"].features["text"] == data.splits["train"].features["text"]).all()


def test_recipe_is_a_dataclass_tree_with_to_dict():
    r = Recipe()
    d = r.to_dict()
    assert set(d) == {"backbone", "data", "pretrain", "prompt", "eval", "cggm", "hooks", "name", "description"}
    assert d["backbone"] == {"name": "mult", "factory": None, "config": {}} and d["hooks"] is None
    assert d["prompt"]["eta"] == 0.7 and "source" not in d
    assert r.replace(name="x").name == "x" and r.name == ""


def test_compile_is_false_true_or_a_backend_name(tmp_path):
    r = load(write_recipe(tmp_path, TINY))
    assert r.pretrain.compile is False and r.prompt.compile is False
    assert recipes.compile_backend(r.pretrain.compile) is None
    r = load(write_recipe(tmp_path, TINY + "compile = true\n[prompt]\ncompile = \"aot_eager\"\n"))
    assert r.pretrain.compile is True and recipes.compile_backend(r.pretrain.compile) == "inductor"
    assert r.prompt.compile == "aot_eager" and recipes.compile_backend(r.prompt.compile) == "aot_eager"
    assert from_dict(r.to_dict()) == r and r.hash() != load(write_recipe(tmp_path, TINY, "s.toml")).hash()


def test_bad_compile_values_name_the_key(tmp_path):
    with pytest.raises(RecipeError, match=r"recipe\.toml: \[pretrain\] compile 'indcutor' is not a torch.compile backend; "
                                          r"did you mean 'inductor'\?"):
        load(write_recipe(tmp_path, TINY + 'compile = "indcutor"\n'))
    with pytest.raises(RecipeError, match=r"\[prompt\] compile 'true' is not a torch.compile backend; .*without quotes"):
        load(write_recipe(tmp_path, TINY + '[prompt]\ncompile = "true"\n'))
    with pytest.raises(RecipeError, match=r"\[pretrain\] compile must be true or false or a string, got 1 \(int\)"):
        load(write_recipe(tmp_path, TINY + "compile = 1\n"))
    with pytest.raises(RecipeError, match=r"unknown key 'compiled' in \[prompt\]; did you mean 'compile'\?"):
        load(write_recipe(tmp_path, TINY + "[prompt]\ncompiled = true\n"))


@pytest.mark.parametrize("raw,message", [
    ({"prompt": {"lr": float("inf")}}, r"\[prompt\] lr must be a finite number, got inf"),
    ({"pretrain": {"grad_clip": float("nan")}}, r"\[pretrain\] grad_clip must be a finite number, got nan"),
    ({"prompt": {"eta": float("nan")}}, r"\[prompt\] eta must be a finite number"),
    ({"backbone": {"name": "mult", "config": {"d_model": "12"}}},
     r"\[backbone.config\] d_model must be an integer, got '12'"),
    ({"backbone": {"name": "mult", "config": {"d_modle": 12}}},
     r"unknown key 'd_modle' in \[backbone.config\] of mult; did you mean 'd_model'\?"),
    ({"backbone": {"name": "misa", "config": {"layers": 2}}}, r"unknown key 'layers' in \[backbone.config\] of misa"),
    ({"prompt": {"prompter": {"signal": "false"}}}, r"\[prompt.prompter\]: PrompterConfig.signal must be a bool"),
])
def test_values_are_type_and_finiteness_checked_where_they_enter(raw, message):
    """A NaN lr, a string d_model or a misspelled backbone keyword once passed validation and failed
    (or trained on silently) later."""
    with pytest.raises(RecipeError, match=message):
        from_dict(raw)


def test_an_empty_recipe_file_is_refused(tmp_path):
    path = tmp_path / "empty.toml"
    path.write_text("# nothing yet\n")
    with pytest.raises(RecipeError, match="is empty"):
        load(path)


def test_data_modalities_select_the_keys_of_a_file_and_the_generators_set(tmp_path):
    import pickle

    import numpy as np

    rng = np.random.default_rng(0)
    obj = {split: {"text": rng.normal(size=(n, 3, 4)).astype(np.float32),
                   "audio": rng.normal(size=(n, 3, 2)).astype(np.float32),
                   "vision": rng.normal(size=(n, 3, 2)).astype(np.float32),
                   "pose": rng.normal(size=(n, 3, 5)).astype(np.float32),
                   "labels": rng.normal(size=(n, 1, 1)).astype(np.float32)}
           for split, n in (("train", 6), ("valid", 4), ("test", 4))}
    path = tmp_path / "four.pkl"
    path.write_bytes(pickle.dumps(obj))
    recipe = from_dict({"data": {"source": "file", "path": str(path), "modalities": ["text", "audio", "vision", "pose"]}})
    data = load_recipe_data(recipe)
    assert data.modalities == ("text", "audio", "vision", "pose") and data.feature_dims["pose"] == 5
    tiny = from_dict({"data": {"source": "file", "path": str(path), "max_bytes": 10}})
    with pytest.raises(Exception, match="declare|limit|exceed"):
        load_recipe_data(tiny)
    with pytest.raises(RecipeError, match="max_bytes limits data files"):
        from_dict({"data": {"max_bytes": 10}})
