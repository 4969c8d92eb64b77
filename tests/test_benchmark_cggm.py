"""``python -m benchmarks.cggm --quick``: the benchmark's whole code path on a tiny config, and its parts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmarks import cggm as bench


def test_quick_run_writes_json_csv_png_and_reports_both_runs(tmp_path):
    payload = bench.main(["--quick", "--seeds", "1", "--epochs", "1", "--out", str(tmp_path), "--quiet"])
    saved = json.loads((tmp_path / "cggm.json").read_text())
    assert saved["summary"] == json.loads(json.dumps(payload["summary"]))
    assert "synthetic" in saved["data"] and "NOT CMU-MOSI" in saved["data"] and "imbalanced on purpose" in saved["data"]
    quantities = [f"test {k}" for k in bench.METRICS] + [f"probe acc {m}" for m in ("text", "audio", "vision")]
    assert list(saved["summary"]) == quantities
    for q in quantities:
        for run in bench.RUNS:
            cell = saved["summary"][q][run]
            assert len(cell["values"]) == 1 and cell["std"] == 0.0 and np.isfinite(cell["mean"])
    (plain,), (with_cggm,) = saved["runs"]["plain"], saved["runs"]["cggm"]
    assert "history" not in plain and set(with_cggm["history"]["B"]) == {"text", "audio", "vision"}
    steps = 48 // 16
    assert all(len(v) == steps and all(0.0 <= b <= 2.0 for b in v) for v in with_cggm["history"]["B"].values())
    assert all(0.0 <= a <= 1.0 for a in with_cggm["classifier_test_acc"].values())
    rows = (tmp_path / "cggm.csv").read_text().splitlines()
    assert rows[0] == "quantity,run,mean,std,values" and len(rows) == 1 + 2 * len(quantities)
    assert (tmp_path / "cggm_coefficients.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert saved["machine"]["torch_threads"] == 1 and len(saved["machine"]["load_average_before"]) == 3


def test_imbalanced_data_adds_the_label_cue_to_the_easy_modality_only():
    s = bench.Settings.quick_settings()
    data = bench.make_imbalanced_data(s)
    plain = bench.make_synthetic_mosi(seed=0, sizes=s.sizes, version=1, seq_lens={m: s.seq_len for m in data.modalities})
    for split in ("train", "test"):
        a, b = data.splits[split], plain.splits[split]
        assert torch.equal(a.labels, b.labels)
        for m in ("text", "vision"):
            assert torch.equal(a.features[m], b.features[m])
        added = (a.features["audio"] - b.features["audio"]).sum(1)  # (N, D): cue summed over valid steps
        assert torch.equal(a.features["audio"] == 0, b.features["audio"] == 0)  # padding stays zero
        assert added.abs().sum() > 0
        # one direction u for every sample: rank 1, and its coefficient follows the label
        assert torch.linalg.matrix_rank(added.double(), rtol=1e-4) == 1
        coef = added @ added[added.norm(dim=1).argmax()]
        assert np.corrcoef(coef.numpy(), a.labels.numpy())[0, 1] ** 2 > 0.3
    assert "audio += 2" in data.description and data.info["imbalance"]["modality"] == "audio"
    with pytest.raises(ValueError, match="--easy must be one of"):
        bench.make_imbalanced_data(bench.Settings.quick_settings(easy="smell"))


def test_ridge_probe_picks_a_penalty_on_valid_and_scores_sign_on_non_zero_labels():
    rng = np.random.default_rng(0)
    w = rng.standard_normal(4)
    x = rng.standard_normal((300, 4))
    y = np.round(x @ w, 1)
    noise = rng.standard_normal((300, 4))  # features that carry nothing
    good = bench.ridge_probe((x[:200], y[:200]), (x[200:250], y[200:250]), (x[250:], y[250:]))
    bad = bench.ridge_probe((noise[:200], y[:200]), (noise[200:250], y[200:250]), (noise[250:], y[250:]))
    assert good["test_acc"] > 0.95 and bad["test_acc"] < 0.75 and good["penalty"] in bench.PROBE_PENALTIES
    assert bench.sign_accuracy(np.array([1.0, -1.0, 1.0]), np.array([2.0, 0.0, -1.0])) == 0.5


def test_bad_arguments_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown backbone 'multx'"):
        bench.main(["--quick", "--backbone", "multx", "--out", str(tmp_path), "--quiet"])
    with pytest.raises(ValueError, match="--seeds and --epochs must be >= 1"):
        bench.main(["--quick", "--seeds", "0", "--out", str(tmp_path), "--quiet"])
