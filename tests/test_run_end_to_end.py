"""``python -m promptkit.cli run`` end to end, in a subprocess, on a tiny synthetic recipe.

The numbers in ``protocol.json`` are recomputed here WITHOUT ``evaluate_protocol``: the data is
rebuilt from the recipe, the saved backbone and adapter are loaded from the run directory, each
case's mask is built by hand, and non0_acc2 is counted with numpy. This pins that the pipeline
scores the TEST split (not the validation one), under the right case masks, with the saved models,
and that the paired "avg" difference is the difference of the six-case averages.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from _helpers import tiny_recipe_toml, write_recipe

# Sizes chosen so the valid (24) and test (40) splits cannot be confused.
RECIPE = tiny_recipe_toml(
    name="tiny-e2e", description="a tiny end-to-end test recipe",
    data={"seed": 3}, sizes=(48, 24, 40), seq_lens=(4, 5, 6),
    pretrain={"epochs": 1, "batch_size": 16, "seed": 1},
    prompt={"epochs": 2, "batch_size": 16, "seed": 2, "methods": ["mplmm", "head_only"], "prompter": {"prompt_length": 4}},
    eval={"missing_rates": [0.5], "seed": 5},
)

MODALITIES = ("text", "audio", "vision")  # the mask's columns
CASES = {  # case name -> available modalities, written out by hand
    "{t}": ("text",),
    "{a}": ("audio",),
    "{v}": ("vision",),
    "{a,t}": ("text", "audio"),
    "{t,v}": ("text", "vision"),
    "{a,v}": ("audio", "vision"),
}
COMPLETE = ("text", "audio", "vision")
TOL = 1e-6


def _command(recipe, out):
    return [sys.executable, "-m", "promptkit.cli", "run", "--recipe", str(recipe), "--out", str(out),
            "--device", "cpu", "--quiet"]


def _run(recipe, out, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("PROMPTKIT_TRACEBACK", None)
    return subprocess.run(_command(recipe, out), cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    recipe = write_recipe(root, RECIPE, "tiny.toml")
    out = root / "run"
    proc = _run(recipe, out, root)
    return recipe, out, proc


def _mask(available, n):
    row = torch.tensor([m in available for m in MODALITIES], dtype=torch.bool)
    return row.expand(n, len(MODALITIES)).clone()


def _non0_acc2(pred, labels):
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    t = np.asarray(labels, dtype=np.float64).reshape(-1)
    keep = t != 0
    return float(np.mean((p[keep] > 0) == (t[keep] > 0)))


def _recipe_data(recipe_path):
    from promptkit.recipes import load, load_recipe_data

    data = load_recipe_data(load(recipe_path))
    assert tuple(data.modalities) == MODALITIES
    return data


def _hand_accuracies(data, out, split):
    """non0_acc2 per case (+ "complete") on ``split`` for zero-fill, MPLMM and head-only."""
    from promptkit.backbone_files import load_backbone
    from promptkit.prompter import MissingModalityPrompter

    ds = data.splits[split]
    feats = {m: torch.as_tensor(x) for m, x in ds.features.items()}
    labels = torch.as_tensor(ds.labels).numpy()
    n = labels.shape[0]
    backbone_file = out / "pretrain" / "backbone.safetensors"

    bare = load_backbone(backbone_file).eval()
    models = {}
    for method, sub in (("mplmm", "prompt"), ("head_only", "head_only")):
        models[method] = MissingModalityPrompter.from_pretrained(load_backbone(backbone_file), out / sub / "adapter").eval()

    acc = {"zero_filled": {}, "mplmm": {}, "head_only": {}}
    with torch.no_grad():
        for case, available in {**CASES, "complete": COMPLETE}.items():
            mask = _mask(available, n)
            filled = {m: feats[m] * mask[:, i, None, None].to(feats[m].dtype) for i, m in enumerate(MODALITIES)}
            acc["zero_filled"][case] = _non0_acc2(bare(**filled).squeeze(-1).numpy(), labels)
            for method, model in models.items():
                acc[method][case] = _non0_acc2(model(**feats, mask=mask).squeeze(-1).numpy(), labels)
    return acc, n


def test_run_cli_scores_the_test_split_as_recomputed_by_hand(finished_run):
    recipe, out, proc = finished_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("protocol.json", "protocol.csv", "protocol.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    summary = json.loads((out / "protocol.json").read_text())
    results = summary["results"]
    assert summary["metric"] == "non0_acc2"

    data = _recipe_data(recipe)
    test_acc, n_test = _hand_accuracies(data, out, "test")
    valid_acc, n_valid = _hand_accuracies(data, out, "valid")
    assert (n_test, n_valid) == (40, 24)  # the two splits are distinguishable by size alone

    for method in ("zero_filled", "mplmm", "head_only"):
        stored = results[method]["cases"]
        assert set(stored) == {*CASES, "avg", "complete"}, method
        for case in (*CASES, "complete"):
            assert stored[case]["non0_acc2"] == pytest.approx(test_acc[method][case], abs=TOL), (method, case)
        six_case_mean = float(np.mean([test_acc[method][c] for c in CASES]))
        assert stored["avg"]["non0_acc2"] == pytest.approx(six_case_mean, abs=TOL), method

    # the same hand computation on the validation split disagrees somewhere: protocol.json is not
    # a validation-split evaluation
    on_valid = [(m, c) for m in ("zero_filled", "mplmm") for c in (*CASES, "complete")
                if abs(results[m]["cases"][c]["non0_acc2"] - valid_acc[m][c]) > TOL]
    assert on_valid, "every stored accuracy equals the validation split's"

    # the paired "avg" difference is the difference of the two six-case averages, in points
    avg = {m: float(np.mean([test_acc[m][c] for c in CASES])) for m in ("mplmm", "zero_filled")}
    paired = summary["paired"]["mplmm_vs_zero_filled"]["avg"]
    assert paired["setting"] == "avg" and paired["metric"] == "non0_acc2" and paired["unit"] == "points"
    assert paired["mean"] == pytest.approx(100 * (avg["mplmm"] - avg["zero_filled"]), abs=TOL)
    assert paired["n"] == int((torch.as_tensor(data.splits["test"].labels) != 0).sum())


def test_run_cli_refuses_a_taken_out_dir_with_one_line_status_2(finished_run):
    recipe, out, first = finished_run
    assert first.returncode == 0, first.stderr[-3000:]
    before = (out / "protocol.json").read_bytes()
    again = _run(recipe, out, out.parent)
    assert again.returncode == 2, again.stderr[-3000:]
    err = again.stderr
    assert err.startswith("promptkit: error: ") and err.count("\n") == 1, err
    assert "already holds this run" in err and "--resume" in err and "--overwrite" in err
    assert "Traceback" not in err
    assert (out / "protocol.json").read_bytes() == before  # the refused run wrote nothing
