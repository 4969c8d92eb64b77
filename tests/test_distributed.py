"""Data-parallel training on CPU: ``torchrun --nproc_per_node 2`` against one process.

Two gloo processes split each global batch; with the dropouts off the only differences from one
process are float reduction order, so the test-split metrics must agree to 1e-4 (MAE) and to one
sample (accuracies). Exactly one set of output files is written, every test sample is scored once
(an uneven 37-sample test split), and ``run.json`` states the process count and the global batch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _helpers import tiny_recipe_toml

from promptkit.train.distributed import check_process_split

NO_DROPOUT = {k: 0.0 for k in ("embed_dropout", "relu_dropout", "res_dropout", "out_dropout", "attn_dropout")}


def _recipe(pretrain_epochs: int = 2) -> str:
    return tiny_recipe_toml(
        name="tiny-ddp", backbone={"name": "mult", "config": {"d_model": 8, "num_heads": 2, "layers": 1, **NO_DROPOUT}},
        sizes=(64, 30, 37), seq_lens=(4, 5, 6), data={"seed": 3},
        pretrain={"epochs": pretrain_epochs, "batch_size": 16, "seed": 1},
        prompt={"epochs": 2, "batch_size": 16, "seed": 2, "methods": ["mplmm", "head_only"], "prompter": {"prompt_length": 3}},
        eval={"missing_rates": [0.5], "seed": 5},
    )


TEST_SAMPLES = 37


def _promptkit(args: list[str], processes: int, cwd: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    if processes == 1:
        cmd = [sys.executable, "-m", "promptkit.cli", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
               "-m", "promptkit.cli", *args]
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    (root / "tiny.toml").write_text(_recipe())
    for n in (1, 2):
        _promptkit(["run", "--recipe", "tiny.toml", "--out", f"run{n}", "--quiet"], n, root)
    return root


@pytest.mark.slow
def test_two_processes_reach_the_one_process_test_metrics(runs):
    one, two = (json.loads((runs / f"run{n}" / "protocol.json").read_text())["results"] for n in (1, 2))
    assert one.keys() == two.keys() == {"zero_filled", "mplmm", "head_only"}
    for method in one:
        for case, metrics in one[method]["cases"].items():
            other = two[method]["cases"][case]
            assert other["mae"] == pytest.approx(metrics["mae"], abs=1e-4), (method, case)
            assert abs(other["non0_acc2"] - metrics["non0_acc2"]) <= 1 / TEST_SAMPLES + 1e-9, (method, case)


@pytest.mark.slow
def test_one_set_of_output_files_and_each_test_sample_once(runs):
    assert _files(runs / "run1") == _files(runs / "run2")
    for stage in ("pretrain", "prompt", "head_only"):
        record = json.loads((runs / "run2" / stage / "run.json").read_text())
        assert (record["num_processes"], record["global_batch_size"], record["per_process_batch_size"]) == (2, 16, 8)
        assert json.loads((runs / "run1" / stage / "run.json").read_text())["num_processes"] == 1
    results = json.loads((runs / "run2" / "pretrain" / "results.json").read_text())
    assert results["test_samples"] == TEST_SAMPLES  # 37 over two shards: padding dropped, none lost


@pytest.mark.slow
def test_a_run_trained_on_two_processes_resumes_on_one(runs):
    """Resuming with another process count is allowed: the global batch and the masks (drawn per
    sample) do not depend on it."""
    root = runs
    (root / "short.toml").write_text(_recipe(pretrain_epochs=1))
    _promptkit(["train", "--recipe", "short.toml", "--out", "resumed", "--quiet"], 2, root)
    _promptkit(["train", "--recipe", "tiny.toml", "--out", "resumed", "--resume", "--quiet"], 1, root)
    resumed = json.loads((root / "resumed" / "results.json").read_text())
    straight = json.loads((root / "run1" / "pretrain" / "results.json").read_text())
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    assert resumed["test"]["mae"] == pytest.approx(straight["test"]["mae"], abs=1e-4)


def test_a_global_batch_the_processes_cannot_share_is_refused():
    splits = {"train": range(64), "valid": range(30), "test": range(37)}
    with pytest.raises(ValueError, match="batch_size 15 is the global batch and must be divisible by the 2 processes"):
        check_process_split(15, 2, splits)
    with pytest.raises(ValueError, match="the valid split has 30 sample\\(s\\), fewer than the 64 processes"):
        check_process_split(64, 64, splits)
    check_process_split(16, 2, splits)
