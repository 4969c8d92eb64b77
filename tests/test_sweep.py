"""``promptkit sweep``: grids expand as written, cells resume without re-running, one tidy CSV.

Most tests replace ``run_pipeline`` with a fake that records the recipe each cell ran with and
writes a small ``protocol.json``; one test runs a real two-cell sweep of a tiny recipe."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest
from _helpers import tiny_recipe_dict, tiny_recipe_toml, write_recipe

import promptkit.experiment.pipeline as run_module
from promptkit.cli import main
from promptkit.recipes import RecipeError, from_dict, load
from promptkit.experiment.sweep import (
    CSV_COLUMNS,
    SweepCell,
    SweepError,
    apply_overrides,
    expand_grid,
    parse_assignment,
    parse_seeds,
    run_sweep,
)
from promptkit.train.run_dir import code_identity


def test_assignments_parse_toml_literals_and_bare_words():
    assert parse_assignment("prompt.eta=0.1,0.3") == ("prompt.eta", [0.1, 0.3])
    assert parse_assignment("prompt.prompter.signal=true,false") == ("prompt.prompter.signal", [True, False])
    assert parse_assignment("prompt.prompter.init_scale=data,fixed") == ("prompt.prompter.init_scale", ["data", "fixed"])
    assert parse_assignment("eval.missing_rates=[],[0.5, 1.0]") == ("eval.missing_rates", [[], [0.5, 1.0]])
    assert parse_assignment("prompt.prompter.prompt_length=4,16")[1] == [4, 16]  # ints stay ints


@pytest.mark.parametrize("bad", ["prompt.eta", "eta=0.1", "prompt.eta=", "prompt.eta=0.1,0.1", "prompt.eta=0.1,",
                                 "prompt.eta=[1"])
def test_a_bad_assignment_is_an_error_naming_it(bad):
    with pytest.raises(SweepError, match="--set"):
        parse_assignment(bad)


def test_seed_lists_and_ranges():
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("0-1,7") == [0, 1, 7]
    assert parse_seeds("3") == [3]
    for bad in ("4-2", "0,0", "a", ""):
        with pytest.raises(SweepError, match="--seeds"):
            parse_seeds(bad)


def test_the_grid_is_the_full_product_first_axis_slowest_each_for_every_seed():
    cells = expand_grid({"prompt.eta": [0.1, 0.5], "prompt.prompter.prompt_length": [4, 8, 16]}, [0, 1])
    assert len(cells) == 2 * 3 * 2 and len({c.name for c in cells}) == len(cells)
    assert [c.as_dict() for c in cells[:2]] == [{"prompt.eta": 0.1, "prompt.prompter.prompt_length": 4}] * 2
    assert [c.seed for c in cells[:2]] == [0, 1]
    assert cells[-1].as_dict() == {"prompt.eta": 0.5, "prompt.prompter.prompt_length": 16}
    assert expand_grid({}, [0, 1, 2])[2].label == "seed=2"  # seeds only
    assert expand_grid({}, [0, 1, 2])[2].name.startswith("seed=2@")
    with pytest.raises(SweepError, match="no values"):
        expand_grid({"prompt.eta": []}, [0])


def test_overrides_set_nested_keys_and_the_seed_and_keep_the_recipe_file():
    base = load("mult-synth")
    r = apply_overrides(base, {"prompt.eta": 0.3, "prompt.prompter.prompt_length": 4}, seed=3)
    assert (r.prompt.eta, r.prompt.prompter["prompt_length"], r.prompt.seed) == (0.3, 4, 3)
    assert r.prompt.prompter["init_scale"] == base.prompt.prompter["init_scale"]  # the rest of the table kept
    assert r.source == base.source  # relative paths (the shipped checkpoint) resolve as before
    assert base.prompt.eta != 0.3 or base.prompt.seed != 3  # the base recipe is not modified
    assert apply_overrides(base, {}).to_dict() == base.to_dict()


@pytest.mark.parametrize("key, value, match", [("prompt.etaa", 0.3, "did you mean 'eta'"),
                                               ("prompt.eta", "high", "eta must be a number"),
                                               ("nope.eta", 1, "'nope' is not a recipe table"),
                                               ("prompt.prompter.prompt_lenght", 3, "prompt_lenght")])
def test_a_wrong_key_or_type_is_the_recipes_error_naming_it(key, value, match):
    with pytest.raises(RecipeError, match=match):
        apply_overrides(load("mult-synth"), {key: value})


# --- running, with a fake pipeline -----------------------------------------------------------------
def _cell(eta: float, seed: int = 0) -> str:
    """The directory name of the cell ``prompt.eta=eta, seed``."""
    return SweepCell((("prompt.eta", eta),), seed).name


def _tiny():
    return from_dict(tiny_recipe_dict(prompt={"epochs": 1, "eta": 0.5}))


@pytest.fixture
def fake_pipeline(monkeypatch):
    """run_pipeline replaced: records (eta, seed, out) and writes a protocol.json whose accuracy is
    eta + seed / 100, so each CSV row can be traced to the cell that wrote it."""
    calls: list[tuple[float, int, str]] = []
    fail_on: set[str] = set()

    def fake(recipe, data, out_dir, **kw):
        name = Path(out_dir).name
        if name in fail_on:
            raise RuntimeError(f"cell {name} interrupted")
        if fail_on:  # the other cells take a while, so a failure is seen before they all finish
            time.sleep(0.3)
        calls.append((recipe.prompt.eta, recipe.prompt.seed, name))
        value = recipe.prompt.eta + recipe.prompt.seed / 100
        result = {"cases": {"{t}": {"non0_acc2": value, "mae": 1 - value}, "avg": {"non0_acc2": value}},
                  "rates": {"0.5": {"non0_acc2": value / 2}}}
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        record = {"results": {"mplmm": result, "zero_filled": result}, "code": code_identity(recipe.backbone.factory)}
        (Path(out_dir) / "protocol.json").write_text(json.dumps(record))
        return {}

    monkeypatch.setattr(run_module, "run_pipeline", fake)
    monkeypatch.setattr("promptkit.recipes.load_recipe_data", lambda recipe, path=None: None)
    return calls, fail_on


def test_every_cell_runs_with_its_own_settings_and_the_csv_is_tidy(fake_pipeline, tmp_path):
    calls, _ = fake_pipeline
    path = run_sweep(_tiny(), {"prompt.eta": [0.1, 0.3]}, [0, 1], tmp_path, progress=False)
    assert sorted((e, s) for e, s, _ in calls) == [(0.1, 0), (0.1, 1), (0.3, 0), (0.3, 1)]
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["cell", "prompt.eta", *CSV_COLUMNS[1:]]
    # 4 cells x 2 methods x (2 metrics of {t} + 1 of avg + 1 of rate=0.5)
    assert len(rows) == 4 * 2 * 4
    row = next(r for r in rows if r["prompt.eta"] == "0.3" and r["seed"] == "1" and r["method"] == "mplmm"
               and r["setting"] == "{t}" and r["metric"] == "non0_acc2")
    assert float(row["value"]) == pytest.approx(0.31)
    assert {r["setting"] for r in rows} == {"{t}", "avg", "rate=0.5"}


def test_an_interrupted_sweep_resumes_without_rerunning_finished_cells(fake_pipeline, tmp_path):
    calls, fail_on = fake_pipeline
    fail_on.add(_cell(0.3, 0))
    with pytest.raises(RuntimeError, match="interrupted"):
        run_sweep(_tiny(), {"prompt.eta": [0.1, 0.3]}, [0, 1], tmp_path, progress=False)
    assert [(e, s) for e, s, _ in calls] == [(0.1, 0), (0.1, 1)]
    fail_on.clear()
    run_sweep(_tiny(), {"prompt.eta": [0.1, 0.3]}, [0, 1], tmp_path, progress=False)
    assert [(e, s) for e, s, _ in calls[2:]] == [(0.3, 0), (0.3, 1)]  # only the cells that had not finished
    run_sweep(_tiny(), {"prompt.eta": [0.1, 0.3]}, [0, 1], tmp_path, progress=False)
    assert len(calls) == 4  # a finished sweep runs nothing


def test_a_finished_cell_of_other_code_is_refused_not_read_back(fake_pipeline, tmp_path):
    """A cell finished by another promptkit source must not be reported as this code's result."""
    calls, _ = fake_pipeline
    run_sweep(_tiny(), {"prompt.eta": [0.1]}, [0], tmp_path, progress=False)
    done = next((tmp_path / "cells").glob("*/protocol.json"))
    record = json.loads(done.read_text())
    record["code"]["source"] = "0" * 64  # as if trained by an edited promptkit
    done.write_text(json.dumps(record))
    with pytest.raises(SweepError, match=r"other code \(code.source: '0{64}' in protocol.json"):
        run_sweep(_tiny(), {"prompt.eta": [0.1]}, [0], tmp_path, progress=False)
    del record["code"]  # a record of a promptkit that kept no code identity
    done.write_text(json.dumps(record))
    with pytest.raises(SweepError, match="produced by other code"):
        run_sweep(_tiny(), {"prompt.eta": [0.1]}, [0], tmp_path, progress=False)
    assert len(calls) == 1


def test_a_directory_holding_another_sweep_is_refused(fake_pipeline, tmp_path):
    run_sweep(_tiny(), {"prompt.eta": [0.1]}, [0], tmp_path, progress=False)
    with pytest.raises(SweepError, match="axes differ"):
        run_sweep(_tiny(), {"prompt.eta": [0.2]}, [0], tmp_path, progress=False)
    with pytest.raises(SweepError, match="seeds differ"):
        run_sweep(_tiny(), {"prompt.eta": [0.1]}, [0, 1], tmp_path, progress=False)


def test_a_bad_cell_is_refused_before_any_cell_runs(fake_pipeline, tmp_path):
    calls, _ = fake_pipeline
    with pytest.raises(RecipeError, match="eta"):
        run_sweep(_tiny(), {"prompt.eta": [0.1, "high"]}, [0], tmp_path, progress=False)
    assert calls == []


def test_cells_run_in_parallel_processes(fake_pipeline, tmp_path):
    """jobs=2: every cell finishes once (the fake is inherited by the forked workers)."""
    path = run_sweep(_tiny(), {"prompt.eta": [0.1, 0.3, 0.5]}, [0], tmp_path, jobs=2, progress=False)
    cells = {p.name for p in (tmp_path / "cells").iterdir() if (p / "protocol.json").is_file()}
    assert cells == {_cell(0.1), _cell(0.3), _cell(0.5)}
    assert path.is_file()


# --- a real sweep ------------------------------------------------------------------------------
def test_the_cli_runs_a_real_two_cell_sweep(tmp_path, capsys):
    recipe = write_recipe(tmp_path, tiny_recipe_toml(sizes=(24, 12, 12), eval={"missing_rates": [0.5]},
                                                     prompt={"epochs": 1, "batch_size": 12, "eta": 0.5}))
    out = tmp_path / "sweep"
    argv = ["sweep", "--recipe", str(recipe), "--set", "prompt.prompter.prompt_length=2,3", "--seeds", "0",
            "--method", "mplmm", "--out", str(out), "--device", "cpu", "--quiet"]
    assert main(argv) == 0
    with open(out / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["prompt.prompter.prompt_length"] for r in rows} == {"2", "3"}
    assert {r["method"] for r in rows} == {"zero_filled", "mplmm"}
    lengths = {}
    for cell in (SweepCell((("prompt.prompter.prompt_length", n),), 0).name for n in (2, 3)):
        run = json.loads((out / "cells" / cell / "prompt" / "run.json").read_text())
        lengths[cell] = run["identity"]["run"]["prompter"]["prompt_length"]
    assert sorted(lengths.values()) == [2, 3]  # each cell trained with its own setting
    assert main(argv) == 0  # finished: read back
    assert "results in" in capsys.readouterr().out


def test_a_failed_cell_in_parallel_stops_the_sweep_and_a_rerun_finishes_it(fake_pipeline, tmp_path):
    """jobs=2: the failure is raised, the cells not yet started are cancelled, not run to the end;
    the rerun runs exactly the cells without a protocol.json."""
    _, fail_on = fake_pipeline
    etas = [round(0.1 * k, 1) for k in range(1, 9)]
    fail_on.add(_cell(0.1))
    with pytest.raises(RuntimeError, match="interrupted"):
        run_sweep(_tiny(), {"prompt.eta": etas}, [0], tmp_path, jobs=2, progress=False)
    done = {p.name for p in (tmp_path / "cells").glob("*") if (p / "protocol.json").is_file()}
    assert _cell(0.1) not in done and len(done) < len(etas) - 1
    fail_on.clear()
    run_sweep(_tiny(), {"prompt.eta": etas}, [0], tmp_path, jobs=2, progress=False)
    assert len([p for p in (tmp_path / "cells").glob("*") if (p / "protocol.json").is_file()]) == len(etas)


def test_each_invocation_that_runs_cells_logs_its_wall_time(fake_pipeline, tmp_path):
    from promptkit.experiment.sweep import sweep_timing

    run_sweep(_tiny(), {"prompt.eta": [0.1]}, [0], tmp_path, progress=False)
    run_sweep(_tiny(), {"prompt.eta": [0.1]}, [0], tmp_path, progress=False)  # all read back: nothing logged
    log = sweep_timing(tmp_path)
    assert len(log) == 1 and log[0]["cells"] == 1 and log[0]["jobs"] == 1 and log[0]["seconds"] >= 0
