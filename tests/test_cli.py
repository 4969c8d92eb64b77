"""The promptkit console script, driven through ``main([...])``: train, resume, eval of the saved
backbone, data describe, listings, and one-line errors with exit status 2."""

from __future__ import annotations

import json

import pytest
import torch
from _helpers import TINY_MULT, tiny_recipe_toml, to_toml, write_recipe

from promptkit.cli import SUBCOMMANDS, build_parser, main

# the recipe the tests train: a tiny MulT, two epochs (data describe shows the (32, 4, 300) text features)
TINY_ARGS = dict(name="tiny", description="a tiny test recipe", sizes=(32, 16, 16), seq_lens=(4, 4, 4),
                 pretrain={"epochs": 2, "batch_size": 16})
TINY = tiny_recipe_toml(**TINY_ARGS)


@pytest.fixture
def recipe(tmp_path):
    return write_recipe(tmp_path, TINY, "tiny.toml")


def test_train_then_eval_reports_the_same_test_metrics(recipe, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--recipe", str(recipe), "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    assert "backbone saved to" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert results["split"] == "test" and len(results["history"]) == 2
    meta = json.loads((out / "backbone.json").read_text())
    assert meta["backbone"] == "mult" and list(meta["config"]["feature_dims"]) == ["text", "audio", "vision"]

    assert main(["eval", "--recipe", str(recipe), "--checkpoint", str(out / "backbone.safetensors"), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics == pytest.approx(results["test"])


def test_train_resume_extends_and_refuses_a_taken_out_dir(recipe, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--recipe", str(recipe), "--out", str(out), "--quiet"]
    assert main(args + ["--epochs", "1"]) == 0
    assert main(args + ["--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("promptkit: error:") and "already holds this run" in err and "\n" not in err
    assert main(args + ["--epochs", "2", "--resume"]) == 0
    assert [h["epoch"] for h in json.loads((out / "results.json").read_text())["history"]] == [1, 2]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--recipe", "no-such-recipe"], "recipe 'no-such-recipe' not found"),
        (["train", "--recipe", "{recipe}", "--epochs", "0"], "--epochs must be >= 1, got 0"),
        (["train", "--recipe", "{recipe}", "--device", "cuda:7"] if not torch.cuda.is_available() else
         ["train", "--recipe", "{recipe}", "--device", "tpu"], "device"),
        (["eval", "--recipe", "{recipe}", "--checkpoint", "{tmp}/missing.safetensors"], "missing.safetensors does not exist"),
        (["data", "describe"], "data describe needs --recipe R or --data PATH"),
        (["train", "--recipe", "mult-mosi"], "no path is given; pass --data PATH"),
    ],
)
def test_errors_are_one_line_with_status_2(recipe, tmp_path, capsys, argv, message):
    argv = [a.format(recipe=recipe, tmp=tmp_path) for a in argv]
    assert main(argv + (["--out", str(tmp_path / "o")] if argv[0] == "train" else [])) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("promptkit: error: ") and message in err
    assert "Traceback" not in err


def test_recipe_feature_dims_that_differ_from_the_data_are_refused(tmp_path, capsys):
    dims = {"feature_dims": {"text": 768, "audio": 5, "vision": 20}}
    p = write_recipe(tmp_path, tiny_recipe_toml(**TINY_ARGS, data=dims), "dims.toml")
    assert main(["train", "--recipe", str(p), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "[data] feature_dims = {'text': 768, 'audio': 5, 'vision': 20}" in err
    assert "has feature_dims = {'text': 300, 'audio': 5, 'vision': 20}" in err


def test_eval_refuses_a_training_state_file(recipe, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--recipe", str(recipe), "--out", str(out), "--epochs", "1", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["eval", "--recipe", str(recipe), "--checkpoint", str(out / "last.safetensors")]) == 2
    assert "holds 'train-state', expected a 'backbone' checkpoint" in capsys.readouterr().err


def test_eval_refuses_a_checkpoint_of_another_backbone(recipe, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--recipe", str(recipe), "--out", str(out), "--epochs", "1", "--quiet"]) == 0
    capsys.readouterr()
    misa = write_recipe(tmp_path, tiny_recipe_toml(**TINY_ARGS, backbone={"name": "misa"}), "misa.toml")
    assert main(["eval", "--recipe", str(misa), "--checkpoint", str(out / "backbone.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "was saved from backbone 'mult'" in err and "names backbone 'misa'" in err


def test_file_data_given_with_data_flag(tmp_path, capsys):
    import pickle

    import numpy as np

    rng = np.random.default_rng(0)
    dims = {"text": 300, "audio": 5, "vision": 20}
    obj = {
        split: {**{m: rng.normal(size=(n, 3, d)).astype(np.float32) for m, d in dims.items()},
                "labels": rng.uniform(-3, 3, size=(n, 1, 1)).astype(np.float32)}
        for split, n in [("train", 16), ("valid", 8), ("test", 8)]
    }
    pkl = tmp_path / "mosi_like.pkl"
    pkl.write_bytes(pickle.dumps(obj))
    assert main(["data", "describe", "--data", str(pkl)]) == 0
    out = capsys.readouterr().out
    assert str(pkl) in out and "(16, 3, 300)" in out
    text = to_toml({"name": "tiny", "backbone": TINY_MULT, "data": {"source": "file"}, "pretrain": {"epochs": 1}})
    recipe = write_recipe(tmp_path, text, "file.toml")
    assert main(["train", "--recipe", str(recipe), "--data", str(pkl), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    assert json.loads((tmp_path / "o" / "results.json").read_text())["data"].endswith(str(pkl))


def test_data_describe_recipes_and_backbones_list(recipe, capsys):
    assert main(["data", "describe", "--recipe", str(recipe)]) == 0
    out = capsys.readouterr().out
    assert "NOT CMU-MOSI" in out and "task regression, out_dim 1" in out
    assert "train" in out and "(32, 4, 300)" in out
    assert main(["recipes", "list"]) == 0
    out = capsys.readouterr().out
    assert "mult-synth" in out and "mult-mosi" in out
    assert main(["backbones", "list"]) == 0
    out = capsys.readouterr().out
    assert "mult" in out and "backbones.mult" in out  # the module that registered it


def test_subcommands_are_built_by_small_functions():
    names = set(build_parser()._subparsers._group_actions[0].choices)
    assert names >= {"train", "eval", "data", "recipes", "backbones"}
    assert all(f.__name__.startswith("add_") for f in SUBCOMMANDS)
    with pytest.raises(SystemExit) as e:
        main(["train"])  # argparse: --recipe is required
    assert e.value.code == 2


@pytest.fixture
def stages(monkeypatch):
    """Replace both training entry points; record the stage settings they would train with."""
    import types

    import promptkit.train
    import promptkit.experiment.pipeline

    seen: dict = {}

    def fake_pretrain(recipe, data, out, **kw):
        seen.update(command="train", pretrain=recipe.pretrain.compile, prompt=recipe.prompt.compile)
        return types.SimpleNamespace(best_epoch=1, primary="mae", test={"mae": 0.0})

    def fake_run(recipe, data, out, **kw):
        seen.update(command="run", pretrain=recipe.pretrain.compile, prompt=recipe.prompt.compile)
        return {}

    monkeypatch.setattr(promptkit.train, "pretrain", fake_pretrain)
    monkeypatch.setattr(promptkit.experiment.pipeline, "run_pipeline", fake_run)
    return seen


@pytest.mark.parametrize(
    "argv, recipe_line, want",
    [
        (["train"], "", {"pretrain": False, "prompt": False}),
        (["train"], "compile = true", {"pretrain": True, "prompt": False}),
        (["train", "--compile"], "", {"pretrain": "inductor", "prompt": False}),
        (["train", "--compile", "eager"], "compile = true", {"pretrain": "eager", "prompt": False}),
        (["run", "--compile"], "", {"pretrain": "inductor", "prompt": "inductor"}),
        (["run", "--compile", "aot_eager", "--quiet"], "compile = true",
         {"pretrain": "aot_eager", "prompt": "aot_eager"}),
    ],
)
def test_compile_flag_overrides_the_recipes_stage_settings(stages, tmp_path, argv, recipe_line, want):
    p = write_recipe(tmp_path, TINY + recipe_line + "\n", "c.toml")
    assert main(argv[:1] + ["--recipe", str(p), "--out", str(tmp_path / "o")] + argv[1:]) == 0
    assert stages == {"command": argv[0], **want}


def test_bad_or_unavailable_compile_backend_is_one_line_error(recipe, tmp_path, capsys, monkeypatch):
    assert main(["train", "--recipe", str(recipe), "--compile", "indcutor", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("promptkit: error: --compile 'indcutor' is not a torch.compile backend; did you mean "
                          "'inductor'?") and err.count("\n") == 1
    import promptkit.compile as pc

    monkeypatch.setattr(pc.shutil, "which", lambda _: None)
    for cmd in ("train", "run"):
        assert main([cmd, "--recipe", str(recipe), "--compile", "--out", str(tmp_path / cmd), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("promptkit: error: the stage asks for torch.compile") and err.count("\n") == 1
        assert "no C++ compiler" in err and not (tmp_path / cmd).exists()
