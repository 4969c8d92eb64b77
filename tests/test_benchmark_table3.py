"""benchmarks.table3 and benchmarks.figures (fig6, fig7) on tiny configurations: the ablation's
switches really remove each prompt type, the benchmarks run end to end, write their files, resume."""

from __future__ import annotations

import json

import pytest

import promptkit.experiment.pipeline as run_module
from benchmarks import _sweeps, figures, table3
from promptkit.backbone_files import build_backbone
from promptkit.hookspec import resolve_module
from promptkit.recipes import load_recipe_data
from promptkit.experiment.sweep import apply_overrides, expand_grid
from promptkit.train.prompt_stage import build_prompter


def _hooks(module):
    return len(module._forward_hooks), len(module._forward_pre_hooks)


def test_each_switch_of_the_ablation_grid_removes_its_prompt_type():
    """Every cell of table3's grid, built as the prompt stage builds it: MMGM and P_G exist only with
    PG, the signal hooks are attached only with PMS, the type hooks and P_MT only with PMT."""
    base = _sweeps.base_recipe(quick=True)
    data = load_recipe_data(base)
    cells = expand_grid(table3.AXES, [0])
    assert len(cells) == 8
    seen = set()
    for cell in cells:
        recipe = apply_overrides(base, cell.as_dict(), cell.seed)
        on = tuple(int(recipe.prompt.prompter[t]) for t in table3.TYPES)
        seen.add(on)
        prompter = build_prompter(recipe, data, build_backbone(recipe, data))
        counts = prompter.prompt_parameters()
        g, s, t = on
        assert (prompter.mmgm is not None) == bool(g) and (counts["generative"] > 0) == bool(g), on
        assert (counts["mmgm_networks"] > 0) == bool(g), on
        assert (counts["type"] > 0) == bool(t), on
        assert (counts["signal"] > 0) == bool(s or t), on  # PMT's tokens are built from the signal prompts
        for target in prompter.spec.signal.values():
            assert _hooks(resolve_module(prompter.backbone, target.path))[0] == (1 if s else 0), on
        for target in prompter.spec.type:
            assert _hooks(resolve_module(prompter.backbone, target.path))[1] == (1 if t else 0), on
        if on == (0, 0, 0):  # the all-off row: only the head trains
            trainable = [n for n, p in prompter.named_parameters() if p.requires_grad]
            assert trainable and all(n.startswith("backbone.") for n in trainable)
        prompter.unwrap()
    assert seen == set(table3.ROWS)


@pytest.mark.slow
def test_table3_runs_end_to_end_and_resumes(tmp_path, monkeypatch):
    argv = ["--quick", "--seeds", "0", "--jobs", "1", "--work", str(tmp_path / "work"), "--out", str(tmp_path),
            "--quiet"]
    payload = table3.main(argv)
    rows = payload["rows"]
    assert list(rows) == [table3.row_name(k) for k in table3.ROWS]
    assert rows["all off (head only)"]["vs_all_off"] is None
    for name, row in rows.items():
        assert set(row["metrics"]) == set(_sweeps.METRICS), name
        assert 0 <= row["metrics"]["acc"]["mean"] <= 100 and row["metrics"]["mae"]["mean"] > 0
    full = rows["PG+PMS+PMT (MPLMM)"]
    assert full["vs_all_off"]["mean"] == pytest.approx(full["metrics"]["acc"]["mean"]
                                                       - rows["all off (head only)"]["metrics"]["acc"]["mean"])
    assert rows["PG"]["paper_mosi"]["acc"] == 70.26 and full["paper_mosi"]["acc"] == 72.14
    assert set(payload["checks"]) == {"single_beats_all_off", "pair_beats_its_singles", "full_beats_every_row"}
    assert len(payload["checks"]["pair_beats_its_singles"]["comparisons"]) == 6
    saved = json.loads((tmp_path / "table3.json").read_text())
    assert "NOT CMU-MOSI" in saved["data"] and "head-only" in saved["all_off_is"]
    assert len((tmp_path / "table3.csv").read_text().splitlines()) == 1 + 8

    def refuse(*a, **k):
        raise AssertionError("a finished cell was trained again")

    monkeypatch.setattr(run_module, "run_pipeline", refuse)
    assert table3.main(argv)["rows"]["PG"]["metrics"] == rows["PG"]["metrics"]  # read back


@pytest.mark.parametrize("fig, values, key", [("fig6", "0.3,0.7", "0.3"), ("fig7", "2,16", "16")])
def test_setting_figures_run_end_to_end(fig, values, key, tmp_path):
    argv = [fig, "--values", values, "--quick", "--seeds", "0", "--jobs", "1", "--work", str(tmp_path / "work"),
            "--out", str(tmp_path), "--quiet"]
    payload = figures.main(argv)[fig]
    assert key in payload["curve"] and len(payload["curve"]) == 2
    assert set(payload["curve"][key]) == set(_sweeps.METRICS)
    optimum = payload["optimum"]
    assert str(optimum["best_of_mean"]) in {v.strip() for v in values.split(",")}
    assert optimum["paper_best"] == (0.7 if fig == "fig6" else 16) and optimum["acc_at_paper_best"] is not None
    assert (tmp_path / f"{fig}.png").stat().st_size > 1000
    assert len((tmp_path / f"{fig}.csv").read_text().splitlines()) == 1 + 2 * 4
    assert "NOT CMU-MOSI" in json.loads((tmp_path / f"{fig}.json").read_text())["data"]
