"""``promptkit sweep`` refuses what it would silently get wrong (issue 24, item 10).

A ``prompt.seed`` axis beside ``--seeds``, two settings sharing a cell directory, a ``--set`` value
cut at a newline or a ``#``, and an argument refused only after ``sweep.json`` was written. Most
tests replace ``run_pipeline`` with a fake that records each cell and writes a small
``protocol.json``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from _helpers import tiny_recipe_dict, tiny_recipe_toml, write_recipe

import promptkit.experiment.pipeline as run_module
from promptkit.cli import main
from promptkit.recipes import from_dict
from promptkit.experiment.sweep import (
    SWEEP_FILE,
    SweepCell,
    SweepError,
    expand_grid,
    parse_assignment,
    run_sweep,
)
from promptkit.train.run_dir import code_identity


def _tiny():
    return from_dict(tiny_recipe_dict(prompt={"epochs": 1, "eta": 0.5}))


@pytest.fixture
def fake_pipeline(monkeypatch):
    """run_pipeline replaced: records (cell directory, recipe) and writes a protocol.json whose
    accuracy is eta + seed / 100."""
    calls: list[tuple[str, object]] = []

    def fake(recipe, data, out_dir, **kw):
        calls.append((Path(out_dir).name, recipe))
        value = recipe.prompt.eta + recipe.prompt.seed / 100
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        result = {"mplmm": {"cases": {"avg": {"acc": value}}}}
        record = {"results": result, "code": code_identity(recipe.backbone.factory)}
        (Path(out_dir) / "protocol.json").write_text(json.dumps(record))
        return {}

    monkeypatch.setattr(run_module, "run_pipeline", fake)
    monkeypatch.setattr("promptkit.recipes.load_recipe_data", lambda recipe, path=None: None)
    return calls


# --- (a) a seed axis beside --seeds --------------------------------------------------------------
def test_a_prompt_seed_axis_beside_seeds_is_refused_naming_both(fake_pipeline, tmp_path):
    """Before: both cells ran [prompt] seed 0 (the seeds overrode the axis) under names saying 1 and 2."""
    out = tmp_path / "sweep"
    with pytest.raises(SweepError, match=r"--set prompt\.seed=1,2 conflicts with --seeds 0.*as --seeds 1,2"):
        run_sweep(_tiny(), {"prompt.seed": [1, 2]}, [0], out, progress=False)
    assert fake_pipeline == [] and not out.exists()
    with pytest.raises(SweepError, match="prompt.seed"):
        expand_grid({"prompt.eta": [0.1], "prompt.seed": [3]}, [0, 1])


def test_the_cli_refuses_a_seed_axis_with_one_line(fake_pipeline, tmp_path, capsys):
    recipe = write_recipe(tmp_path, tiny_recipe_toml())
    out = tmp_path / "sweep"
    rc = main(["sweep", "--recipe", str(recipe), "--set", "prompt.seed=1,2", "--seeds", "0-1", "--out", str(out),
               "--quiet"])
    assert rc == 2 and "conflicts with --seeds 0,1" in capsys.readouterr().err
    assert fake_pipeline == [] and not out.exists()


# --- (b) injective cell names --------------------------------------------------------------------
def test_values_that_read_alike_get_their_own_cell_directories():
    """Before: ``ck/a.safetensors`` and ``ck_a.safetensors`` (and 1 / "1") were one directory."""
    paths = expand_grid({"pretrain.checkpoint": ["ck/a.safetensors", "ck_a.safetensors"]}, [0])
    assert paths[0].label == paths[1].label == "pretrain.checkpoint=ck_a.safetensors,seed=0"
    assert paths[0].name != paths[1].name and all(c.name.startswith(c.label + "@") for c in paths)
    alike = expand_grid({"a.b": [1, "1", 1.0, True]}, [0])
    assert len({c.name for c in alike}) == 4
    assert expand_grid({"a.b": [1]}, [0])[0].name == alike[0].name  # a function of the cell alone
    long = SweepCell((("a.b", "x" * 400),), 0).name
    assert len(long) <= 255 and long != SweepCell((("a.b", "x" * 401),), 0).name


def test_two_cells_that_read_alike_run_and_report_apart(fake_pipeline, tmp_path):
    """Before: the second cell found the first one's protocol.json and reported its results."""
    import csv

    path = run_sweep(_tiny(), {"pretrain.checkpoint": ["ck/a.safetensors", "ck_a.safetensors"]}, [0], tmp_path,
                     progress=False)
    assert sorted(r.pretrain.checkpoint for _, r in fake_pipeline) == ["ck/a.safetensors", "ck_a.safetensors"]
    assert len({name for name, _ in fake_pipeline}) == 2
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert {r["pretrain.checkpoint"] for r in rows} == {"ck/a.safetensors", "ck_a.safetensors"}
    assert len({r["cell"] for r in rows}) == 2
    record = json.loads((tmp_path / SWEEP_FILE).read_text())
    assert record["cell_naming"] == 2
    assert sorted(c["dir"] for c in record["cells"]) == sorted(n for n, _ in fake_pipeline)


def test_a_cell_is_found_again_whatever_the_order_of_the_axes(fake_pipeline, tmp_path):
    """Before: the same grid given with its axes swapped named every cell anew and ran them all again."""
    run_sweep(_tiny(), {"prompt.eta": [0.1, 0.3], "prompt.lr": [0.01]}, [0], tmp_path, progress=False)
    assert len(fake_pipeline) == 2
    path = run_sweep(_tiny(), {"prompt.lr": [0.01], "prompt.eta": [0.1, 0.3]}, [0], tmp_path, progress=False)
    assert len(fake_pipeline) == 2 and len(path.read_text().splitlines()) == 1 + 2


def _as_older_sweep(out: Path) -> None:
    """Rewrite ``out`` as an older promptkit left it: cells named by their labels, no naming record."""
    record = json.loads((out / SWEEP_FILE).read_text())
    for c in record.pop("cells"):
        os.rename(out / "cells" / c["dir"], out / "cells" / c["dir"].rsplit("@", 1)[0])
    del record["cell_naming"]
    (out / SWEEP_FILE).write_text(json.dumps(record))


def test_an_older_sweep_resumes_under_its_names_unless_two_cells_shared_one(fake_pipeline, tmp_path):
    """Before: the older directory whose two cells shared ``cells/<label>`` read the first cell's
    results back for the second; now it is refused, and one whose names were distinct resumes."""
    out = tmp_path / "plain"
    run_sweep(_tiny(), {"prompt.eta": [0.1, 0.3]}, [0], out, progress=False)
    _as_older_sweep(out)
    fake_pipeline.clear()
    path = run_sweep(_tiny(), {"prompt.eta": [0.1, 0.3]}, [0], out, progress=False)
    assert fake_pipeline == []  # both read back from their old directories
    assert sorted(p.name for p in (out / "cells").iterdir()) == ["prompt.eta=0.1,seed=0", "prompt.eta=0.3,seed=0"]
    assert "prompt.eta=0.3,seed=0" in path.read_text()

    shared = tmp_path / "shared"
    grid = {"pretrain.checkpoint": ["ck/a.safetensors", "ck_a.safetensors"]}
    run_sweep(_tiny(), grid, [0], shared, progress=False)
    record = json.loads((shared / SWEEP_FILE).read_text())
    os.remove(shared / "cells" / record["cells"][1]["dir"] / "protocol.json")  # the older sweep ran one of them
    os.rmdir(shared / "cells" / record["cells"][1]["dir"])
    del record["cells"][1]
    (shared / SWEEP_FILE).write_text(json.dumps(record))
    _as_older_sweep(shared)
    with pytest.raises(SweepError, match=r"older promptkit.*share the directory cells/pretrain\.checkpoint=ck_a"):
        run_sweep(_tiny(), grid, [0], shared, progress=False)


# --- (c) a value cut at a newline or a comment ---------------------------------------------------
@pytest.mark.parametrize("text, match", [("prompt.eta=0.1\nprompt.lr = 5", "newline"),
                                         ("prompt.eta=0.1,0.3\n", "newline"),
                                         ("prompt.eta=0.1\r0.3", "control character")])
def test_a_set_value_with_a_newline_is_refused_not_cut(text, match):
    """Before: each parsed as ``prompt.eta=0.1`` (or 0.1, 0.3), the rest dropped silently."""
    with pytest.raises(SweepError, match=match):
        parse_assignment(text)


def test_a_hash_outside_quotes_is_refused_inside_quotes_kept():
    """Before: ``0.1#0.3`` was 0.1 (TOML read ``#0.3`` as a comment) and ``0.1 # 0.3,0.5`` was 0.1, 0.5."""
    for text in ("prompt.eta=0.1#0.3", "prompt.eta=0.1 # 0.3,0.5"):
        with pytest.raises(SweepError, match="would start a TOML comment"):
            parse_assignment(text)
    assert parse_assignment('a.b="x#1",y') == ("a.b", ["x#1", "y"])


def test_the_cli_refuses_a_value_with_a_newline_before_writing(fake_pipeline, tmp_path, capsys):
    recipe = write_recipe(tmp_path, tiny_recipe_toml(prompt={"epochs": 1, "eta": 0.5}))
    out = tmp_path / "sweep"
    rc = main(["sweep", "--recipe", str(recipe), "--set", "prompt.eta=0.1\nprompt.lr = 5", "--out", str(out),
               "--quiet"])
    assert rc == 2 and "newline" in capsys.readouterr().err
    assert fake_pipeline == [] and not out.exists()


# --- (d) every argument checked before anything is written ---------------------------------------
def test_an_unknown_method_is_refused_before_sweep_json_and_the_corrected_command_runs(fake_pipeline, tmp_path,
                                                                                         capsys):
    """Before: the first cell refused the method after sweep.json recorded it, and the corrected
    command was then refused as "another sweep (its methods differ)"."""
    recipe = write_recipe(tmp_path, tiny_recipe_toml(prompt={"epochs": 1, "eta": 0.5}))
    out = tmp_path / "sweep"
    argv = ["sweep", "--recipe", str(recipe), "--set", "prompt.eta=0.1,0.3", "--out", str(out), "--quiet",
            "--method"]
    assert main([*argv, "mplmmm"]) == 2
    assert "unknown method 'mplmmm'; did you mean 'mplmm'?" in capsys.readouterr().err
    assert fake_pipeline == [] and not out.exists()
    assert main([*argv, "mplmm"]) == 0
    assert len(fake_pipeline) == 2


@pytest.mark.parametrize("kw, error, match", [
    ({"methods": ["mplmm", "mplmm"]}, ValueError, "none twice"),
    ({"device": "tpu"}, ValueError, "device 'tpu'"),
    ({"jobs": 0}, SweepError, "jobs must be an integer of at least 1"),
    ({"data_path": "no/such/data.pkl"}, SweepError, "no/such/data.pkl"),
])
def test_any_invalid_argument_is_refused_before_anything_is_written(fake_pipeline, tmp_path, kw, error, match):
    out = tmp_path / "sweep"
    with pytest.raises(error, match=match):
        run_sweep(_tiny(), {"prompt.eta": [0.1]}, [0], out, progress=False, **kw)
    assert fake_pipeline == [] and not out.exists()


def test_a_cell_asking_for_an_unavailable_compile_backend_is_refused_before_writing(fake_pipeline, tmp_path,
                                                                                   monkeypatch):
    monkeypatch.setattr("promptkit.compile.compile_available", lambda backend="inductor": (False, "no compiler"))
    out = tmp_path / "sweep"
    with pytest.raises(RuntimeError, match="cannot run here: no compiler"):
        run_sweep(_tiny(), {"prompt.compile": [False, True]}, [0], out, progress=False)
    assert fake_pipeline == [] and not out.exists()
