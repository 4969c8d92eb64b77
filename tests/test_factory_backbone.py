"""A user's model through the CLI: ``[backbone] factory = "pkg.module:build"`` with a ``[hooks]``
table, end to end through ``promptkit run`` in a subprocess; the factory's errors; checkpoints and
run records that identify the factory; and the ``promptkit.backbones`` entry-point group."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from _helpers import FOREIGN_HOOKS, TINY_MULT, tiny_recipe_toml, to_toml, write_recipe

import backbones
from backbones import _registry
from promptkit import hookspec
from promptkit.checkpoint import CheckpointError
from promptkit.cli import main
from promptkit.recipes import RecipeError, load, load_recipe_data

TESTS = Path(__file__).resolve().parent
FACTORY = "_foreign_pkg.models:build"

# everything after [backbone] and [hooks]: 32 / 16 / 24 synthetic samples, one epoch per stage
BODY = tiny_recipe_toml(
    backbone=None, data={"seed": 1}, sizes=(32, 16, 24), seq_lens=(3, 3, 3),
    prompt={"epochs": 1, "batch_size": 16, "methods": ["mplmm", "head_only"], "prompter": {"prompt_length": 2}},
    eval={"missing_rates": [0.5]},
)


def factory_recipe(factory: str = FACTORY, config: str = "dim = 8", hooks: str = FOREIGN_HOOKS) -> str:
    return f'name = "tiny-factory"\n[backbone]\nfactory = "{factory}"\n[backbone.config]\n{config}\n{hooks}{BODY}'


@pytest.fixture(scope="module")
def factory_run(tmp_path_factory):
    """``python -m promptkit.cli run`` on the factory recipe, in a fresh process; the package is
    importable the way an installed one is (on PYTHONPATH), not from the recipe's folder."""
    root = tmp_path_factory.mktemp("factory")
    recipe = write_recipe(root, factory_recipe())
    out = root / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    env.pop("PROMPTKIT_TRACEBACK", None)
    cmd = [sys.executable, "-m", "promptkit.cli", "run", "--recipe", str(recipe), "--out", str(out),
           "--device", "cpu", "--quiet"]
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    return recipe, out, proc


@pytest.mark.slow
def test_factory_recipe_runs_through_promptkit_run(factory_run):
    recipe, out, proc = factory_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "protocol.json").read_text())
    assert set(summary["results"]) == {"zero_filled", "mplmm", "head_only"}
    assert summary["backbone"]["factory"] == FACTORY and "backbone" not in summary["backbone"]
    # the checkpoint says which factory built it, with the keywords it was called with
    meta = json.loads((out / "pretrain" / "backbone.json").read_text())
    assert meta["factory"] == FACTORY and "backbone" not in meta
    assert meta["config"] == {"feature_dims": {"text": 300, "audio": 5, "vision": 20}, "out_dim": 1, "dim": 8}
    # the pretrain run record names it too (so --resume with another factory is refused)
    run = json.loads((out / "pretrain" / "run.json").read_text())
    assert run["key"]["run"]["factory"] == FACTORY
    # the adapters were made on the recipe's [hooks] spec, for both the prompts and the control
    from _foreign_pkg.models import hooks

    want = hookspec.HookSpec.from_dict(hooks()).to_dict()
    for stage in ("prompt", "head_only"):
        saved = json.loads((out / stage / "adapter" / "promptkit_config.json").read_text())
        assert saved["backbone_class"] == "ForeignMSA" and saved["hook_spec"] == want, stage


def test_factory_checkpoint_loads_for_its_recipe_only(factory_run, tmp_path, capsys):
    recipe, out, proc = factory_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = out / "pretrain" / "backbone.safetensors"
    from promptkit.backbone_files import load_backbone

    model = load_backbone(ckpt, recipe=load(recipe))
    assert type(model).__name__ == "ForeignMSA" and not model.training

    assert main(["eval", "--recipe", str(recipe), "--checkpoint", str(ckpt), "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)) >= {"mae", "non0_acc2", "loss"}

    # another backbone's recipe, a registered one or another factory, is refused, naming both
    mult = write_recipe(tmp_path, '[backbone]\nname = "mult"\n' + BODY, "mult.toml")
    assert main(["eval", "--recipe", str(mult), "--checkpoint", str(ckpt)]) == 2
    err = capsys.readouterr().err
    assert f"was saved from factory '{FACTORY}'" in err and "names backbone 'mult'" in err
    other = load(write_recipe(tmp_path, factory_recipe("_foreign_pkg.models:build_again"), "other.toml"))
    with pytest.raises(CheckpointError, match=r"names factory '_foreign_pkg.models:build_again'"):
        load_backbone(ckpt, recipe=other)
    # [pretrain] checkpoint = a file of another backbone: refused before anything trains
    from promptkit.experiment.pipeline import obtain_backbone

    borrowed = other.replace(pretrain=type(other.pretrain)(checkpoint=str(ckpt)))
    with pytest.raises(CheckpointError, match="fits only the backbone it was made with"):
        obtain_backbone(borrowed, load_recipe_data(other), tmp_path / "o")


def test_train_and_eval_do_not_need_feature_dims_on_the_model(tmp_path, capsys):
    recipe = write_recipe(tmp_path, factory_recipe("_foreign_pkg.models:build_without_dims"))
    out = tmp_path / "pre"
    assert main(["train", "--recipe", str(recipe), "--out", str(out), "--device", "cpu", "--quiet"]) == 0, \
        capsys.readouterr().err
    capsys.readouterr()
    assert main(["eval", "--recipe", str(recipe), "--checkpoint", str(out / "backbone.safetensors"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["loss"] >= 0


def test_resuming_a_run_with_another_factory_is_refused(factory_run):
    from promptkit.train import RunDirError, pretrain

    recipe, out, proc = factory_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    other = load(write_recipe(out.parent, factory_recipe("_foreign_pkg.models:build_again"), "again.toml"))
    with pytest.raises(RunDirError, match=r"holds a different run \(settings differ in: .*run\.factory"):
        pretrain(other, load_recipe_data(other), out / "pretrain", resume=True, progress=False)


@pytest.mark.parametrize(
    "factory, message",
    [
        ("_foreign_pkg.models.build", r"must have the form 'package.module:function'"),
        ("_foreign_pkg.no_such_module:build", r"cannot import module '_foreign_pkg.no_such_module' \(No module named"),
        ("_foreign_pkg.broken:build", r"importing module '_foreign_pkg.broken' failed: ImportError: this plug-in needs"),
        ("_foreign_pkg.models:biuld", r"'_foreign_pkg.models' has no attribute 'biuld'; did you mean 'build'\?"),
        ("_foreign_pkg.models:NOT_CALLABLE", r"'NOT_CALLABLE' is a int, not a callable"),
    ],
)
def test_factory_import_errors_name_recipe_factory_and_cause(tmp_path, factory, message):
    """Reading a recipe imports nothing (issue 24): only a malformed string is refused at load; an
    import error is named when a run builds the backbone."""
    from promptkit.backbone_files import build_backbone

    p = write_recipe(tmp_path, factory_recipe(factory))
    with pytest.raises(RecipeError, match=rf"recipe {p}: \[backbone\] factory '{factory}': {message}"):
        recipe = load(p)
        build_backbone(recipe, load_recipe_data(recipe))


@pytest.mark.parametrize(
    "factory, message",
    [
        ("_foreign_pkg.models:not_a_model", r"returned a dict, not a torch.nn.Module"),
        ("_foreign_pkg.models:raises", r"raised RuntimeError when called with keywords \['dim'\]: no weights here"),
    ],
)
def test_a_factory_that_builds_no_module_is_named(tmp_path, factory, message):
    from promptkit.backbone_files import build_backbone

    p = write_recipe(tmp_path, factory_recipe(factory))
    recipe = load(p)
    with pytest.raises(RecipeError, match=rf"recipe {p}: \[backbone\] factory '{factory}': {message}"):
        build_backbone(recipe, load_recipe_data(recipe))


def test_name_and_factory_exclude_each_other(tmp_path):
    text = factory_recipe().replace("[backbone]\n", '[backbone]\nname = "mult"\n')
    with pytest.raises(RecipeError, match=r"recipe\.toml: \[backbone\] sets both name 'mult' and factory "
                                          rf"'{FACTORY}'; give one"):
        load(write_recipe(tmp_path, text))


@pytest.mark.parametrize(
    "hooks, message",
    [
        (FOREIGN_HOOKS.replace('trainable = ["head"]', 'trainable = ["head"]\noutputs = 0'),
         r"unknown HookSpec key\(s\) \['outputs'\]"),
        (FOREIGN_HOOKS.replace('text = "proj.text"', 'text = { path = "proj.text", layout = "DTB" }'),
         r"signal target 'proj.text': layout must be one of"),
        (FOREIGN_HOOKS.replace('[hooks.features]\ntext = "text"\naudio = "audio"\nvision = "vision"\n', ""),
         r"features"),
        (FOREIGN_HOOKS.replace('[hooks.encoders]', '[hooks.encoders]\npose = "enc.pose"'),
         r"HookSpec.encoders names modality \['pose'\]"),
    ],
)
def test_hooks_table_is_checked_at_load(tmp_path, hooks, message):
    p = write_recipe(tmp_path, factory_recipe(hooks=hooks))
    with pytest.raises(RecipeError, match=rf"recipe {p}: \[hooks\]: .*{message}"):
        load(p)
    # a path that does not exist in the model is found when the model is wrapped (it needs the model)


def test_factory_is_found_beside_the_recipe_and_gets_only_the_keywords_it_names(tmp_path):
    from promptkit.backbone_files import backbone_kwargs, build_backbone

    (tmp_path / "beside_model_x7.py").write_text(
        "from torch import nn\n"
        "def build(feature_dims, width=4):\n"
        "    return nn.Linear(sum(feature_dims.values()), width)\n"
    )
    recipe = load(write_recipe(tmp_path, factory_recipe("beside_model_x7:build", config="width = 3", hooks="")))
    data = load_recipe_data(recipe)
    assert backbone_kwargs(recipe, data) == {"feature_dims": {"text": 300, "audio": 5, "vision": 20}, "width": 3}
    model = build_backbone(recipe, data)
    assert isinstance(model, torch.nn.Linear) and model.out_features == 3
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    absent = load(write_recipe(elsewhere, factory_recipe("absent_model_x7:build", hooks="")))
    with pytest.raises(RecipeError, match=rf"cannot import module 'absent_model_x7' .* nor in {elsewhere}"):
        build_backbone(absent, data)


def test_registered_backbone_with_a_hooks_table_uses_the_recipes_spec(tmp_path, monkeypatch):
    """``[hooks]`` on a registered backbone replaces its registered spec in every stage."""
    import importlib

    pt = importlib.import_module("promptkit.train.pretrain")  # the module; promptkit.train.pretrain is the function
    run = importlib.import_module("promptkit.experiment.pipeline")

    spec = {"features": {m: m for m in ("text", "audio", "vision")}, "trainable": ["head.out_layer"],
            "signal": {m: {"path": f"proj.{m}", "layout": "BDT"} for m in ("text", "audio", "vision")}}
    hooks = "[hooks]\n" + f"trainable = {json.dumps(spec['trainable'])}\n[hooks.features]\n" + "".join(
        f'{m} = "{m}"\n' for m in spec["features"]) + "[hooks.signal]\n" + "".join(
        f'{m} = {{ path = "proj.{m}", layout = "BDT" }}\n' for m in spec["features"])
    text = to_toml({"backbone": TINY_MULT}) + hooks + BODY
    recipe = load(write_recipe(tmp_path, text.replace('methods = ["mplmm", "head_only"]', "")))
    assert recipe.hook_spec() == hookspec.HookSpec.from_dict(spec)

    seen: dict = {}
    real_fit = pt.fit

    def spy_fit(*args, **kw):
        seen["pretrain"] = kw.get("hooks")
        return real_fit(*args, **kw)

    class Stop(Exception):
        pass

    def spy_prompt_tune(recipe, data, backbone, out_dir, **kw):
        seen["prompt"] = kw.get("hooks")
        raise Stop

    monkeypatch.setattr(pt, "fit", spy_fit)
    monkeypatch.setattr("promptkit.methods._prompter_fit.prompt_tune", spy_prompt_tune)  # every prompter method
    with pytest.raises(Stop):
        run.run_pipeline(recipe, load_recipe_data(recipe), tmp_path / "run", device="cpu", progress=False)
    assert seen == {"pretrain": recipe.hook_spec(), "prompt": recipe.hook_spec()}


# --- entry points -----------------------------------------------------------------------------
@pytest.fixture
def fresh_registry(monkeypatch):
    """A copy of the registry and the spec table, entry points not yet loaded, the test package
    not yet imported; everything is put back afterwards."""
    monkeypatch.setattr(_registry, "_BACKBONES", dict(_registry._BACKBONES))
    monkeypatch.setattr(_registry, "_entry_points_loaded", False)
    monkeypatch.setattr(hookspec, "_SPECS", dict(hookspec._SPECS))
    for name in [m for m in sys.modules if m == "_foreign_pkg" or m.startswith("_foreign_pkg.")]:
        monkeypatch.delitem(sys.modules, name)
    yield
    for name in [m for m in sys.modules if m in ("_foreign_pkg.plugin", "_foreign_pkg.broken")]:
        del sys.modules[name]  # it registered into the copies only; a later import must register again


def fake_entry_points(monkeypatch, *values: tuple[str, str]) -> list[int]:
    """``importlib.metadata.entry_points`` answering the group with these ``(name, value)`` pairs;
    returns a list that counts the calls."""
    calls: list[int] = []
    eps = [importlib.metadata.EntryPoint(name=n, value=v, group=_registry.ENTRY_POINT_GROUP) for n, v in values]

    def entry_points(**kw):
        calls.append(1)
        return eps if kw.get("group") == _registry.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    return calls


def test_entry_points_register_backbones_and_specs_once(fresh_registry, monkeypatch):
    calls = fake_entry_points(monkeypatch, ("foreign", "_foreign_pkg.plugin"), ("wide", "_foreign_pkg.plugin:register"))
    assert "foreign_msa" in backbones.list_backbones() and backbones.is_backbone("foreign_msa_wide")
    assert backbones.list_backbones("foreign*") == ["foreign_msa", "foreign_msa_wide"]
    assert "mult" in backbones.list_backbones()
    assert len(calls) == 1  # loaded once, however often the registry is asked
    model = backbones.create_backbone("foreign_msa", feature_dims={"text": 4, "audio": 3})
    spec = hookspec.hook_spec_for(model)  # the plug-in registered its spec too
    assert spec.modalities == ("text", "audio") and spec.trainable == ["head"]
    assert backbones.create_backbone("foreign_msa_wide").proj["text"].out_features == 16


def test_a_recipe_names_an_entry_point_backbone(fresh_registry, monkeypatch, tmp_path):
    fake_entry_points(monkeypatch, ("foreign", "_foreign_pkg.plugin"))
    recipe = load(write_recipe(tmp_path, '[backbone]\nname = "foreign_msa"\n[backbone.config]\ndim = 4\n' + BODY))
    from promptkit.backbone_files import build_backbone

    model = build_backbone(recipe, load_recipe_data(recipe))
    assert type(model).__name__ == "ForeignMSA" and model.proj["audio"].out_features == 4


def test_an_entry_point_backbone_without_config_runs_and_its_file_imports_nothing(fresh_registry, monkeypatch,
                                                                                   tmp_path):
    """A plug-in's builder that returns a plain nn.Module (ForeignMSA has no ``config()``, like
    MMSA's TFN). Before: "'ForeignMSA' object has no attribute 'config'" after pre-training, the
    run directory holding only pretrain/. Now its file records the registry name and the keywords
    the builder was called with, and the run goes on."""
    from promptkit.backbone_files import load_backbone
    from promptkit.experiment.pipeline import run_pipeline

    fake_entry_points(monkeypatch, ("foreign", "_foreign_pkg.plugin"))
    recipe = load(write_recipe(tmp_path, '[backbone]\nname = "foreign_msa"\n[backbone.config]\ndim = 4\n' + BODY))
    summary = run_pipeline(recipe, load_recipe_data(recipe), tmp_path / "run", device="cpu", progress=False)
    assert not hasattr(backbones.create_backbone("foreign_msa"), "config")
    assert set(summary["results"]) == {"zero_filled", "mplmm", "head_only"}
    assert (tmp_path / "run" / "protocol.json").is_file()
    meta = json.loads((tmp_path / "run" / "pretrain" / "backbone.json").read_text())
    assert meta["backbone"] == "foreign_msa" and "factory" not in meta
    assert meta["config"] == {"feature_dims": {"text": 300, "audio": 5, "vision": 20}, "out_dim": 1,
                              "task": "regression", "dim": 4}
    ckpt = tmp_path / "run" / "pretrain" / "backbone.safetensors"
    model = load_backbone(ckpt)  # rebuilt through the caller's registry, with the recorded keywords
    assert type(model).__name__ == "ForeignMSA" and model.proj["audio"].out_features == 4

    # without the plug-in installed, the file alone is refused and imports nothing it names
    for name in [m for m in sys.modules if m == "_foreign_pkg" or m.startswith("_foreign_pkg.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(_registry, "_BACKBONES", {k: v for k, v in _registry._BACKBONES.items()
                                                  if not k.startswith("foreign_msa")})
    fake_entry_points(monkeypatch)
    monkeypatch.setattr(_registry, "_entry_points_loaded", False)
    with pytest.raises(CheckpointError, match=r"saved from backbone 'foreign_msa', which is not registered"):
        load_backbone(ckpt)
    assert not any(m.startswith("_foreign_pkg") for m in sys.modules)


def test_a_broken_entry_point_warns_and_backbones_list_still_works(fresh_registry, monkeypatch, capsys):
    fake_entry_points(monkeypatch, ("broken", "_foreign_pkg.broken"), ("gone", "_foreign_pkg_gone.mod"),
                      ("not_a_function", "_foreign_pkg.models:NOT_CALLABLE"), ("foreign", "_foreign_pkg.plugin"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["backbones", "list"]) == 0
    out = capsys.readouterr().out
    assert "foreign_msa" in out and "_foreign_pkg.plugin" in out and "mult" in out and "backbones.mult" in out
    messages = [str(w.message) for w in caught]
    for name, cause in [("broken", "ImportError: this plug-in needs"), ("gone", "ModuleNotFoundError"),
                        ("not_a_function", "not a module or a registration function")]:
        hits = [m for m in messages if f"promptkit.backbones entry point {name!r}" in m]
        assert len(hits) == 1 and "was skipped" in hits[0] and cause in hits[0], (name, messages)


def test_example_recipe_loads():
    """The README's example: examples/custom-backbone.toml, its factory beside it."""
    recipe = load(TESTS.parent / "examples" / "custom-backbone.toml")
    assert recipe.backbone.factory == "custom_backbone:build" and recipe.backbone.name is None
    assert recipe.hook_spec().modalities == ("text", "audio", "vision")
