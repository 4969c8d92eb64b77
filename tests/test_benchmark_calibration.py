"""``python -m benchmarks.calibration`` on tiny sizes: the whole code path, the JSON schema, and the
version-2 zero-filling collapse that version 1 lacks (synthetic data, NOT CMU-MOSI)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import calibration as bench

TINY = ["--sizes", "300", "150", "300", "--source-sizes", "300", "150", "300", "--seeds", "0", "--quiet"]
TEXTLESS = ("{a}", "{v}", "{a,v}")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """version → (payload returned, JSON read back) of one tiny invocation each."""
    out = {}  # one intra-op thread, as everywhere in the suite (tests/conftest.py)
    for v in (1, 2):
        d = tmp_path_factory.mktemp(f"calib_v{v}")
        payload = bench.main([*TINY, "--versions", str(v), "--out", str(d)])
        out[v] = (payload, json.loads((d / "calibration.json").read_text()))
    return out


def _check_stat(s, n_seeds=1):
    assert set(s) == {"mean", "sd", "per_seed"}
    assert len(s["per_seed"]) == n_seeds and np.isfinite(s["mean"]) and s["sd"] == 0.0
    assert s["mean"] == pytest.approx(s["per_seed"][0])


def test_tiny_run_writes_the_json_schema(runs):
    payload, saved = runs[2]
    assert saved["benchmark"] == "calibration"
    assert "synthetic" in saved["data"] and "NOT CMU-MOSI" in saved["data"]
    assert saved["seq_len"] == 20 and saved["seeds"] == [0] and saved["sizes"] == [300, 150, 300]
    assert list(saved["versions"]) == ["2"]
    res = saved["versions"]["2"]
    assert list(res["cases"]) == list(bench.CASE_ORDER)
    for c, cell in res["cases"].items():
        assert set(cell) == {"alone", "zero_filled", "headroom"}
        for s in cell.values():
            _check_stat(s)
        assert 0.0 <= cell["alone"]["mean"] <= 100.0 and 0.0 <= cell["zero_filled"]["mean"] <= 100.0
        assert cell["headroom"]["mean"] == pytest.approx(cell["alone"]["mean"] - cell["zero_filled"]["mean"])
    # complete: the same complete-trained fit on the same data either way
    assert res["cases"]["complete"]["zero_filled"]["mean"] == pytest.approx(res["cases"]["complete"]["alone"]["mean"])
    assert set(res["r2"]) == {"text", "audio", "vision"}
    for s in res["r2"].values():
        _check_stat(s)
        assert 0.0 < s["mean"] < 100.0
    assert set(res["transfer"]) == set(bench.TRANSFER_CASES)
    for t in res["transfer"].values():
        assert set(t) == {"source_trained", "in_domain", "gap"}
        for s in t.values():
            _check_stat(s)
    assert res["transfer"]["complete"]["in_domain"] == res["cases"]["complete"]["alone"]
    lb = saved["paper_cmu_mosi_lb"]
    assert lb["LB"]["{t}"] == pytest.approx(79.27) and lb["LB"]["{a}"] == pytest.approx(48.32)
    assert "MS" in lb or "note" in lb
    assert saved["machine"]["torch_threads"] == 1 and saved["seconds"]["total"] > 0
    assert saved["versions"] == json.loads(json.dumps(payload["versions"]))


def test_v2_zero_filled_textless_cases_collapse_and_v1_much_less(runs):
    v1 = runs[1][1]["versions"]["1"]["cases"]
    v2 = runs[2][1]["versions"]["2"]["cases"]
    for c in TEXTLESS:  # measured at this size, seeds 0-4: v2 headroom 9-25 points, v1 -4 to +9
        assert v2[c]["zero_filled"]["mean"] < v2[c]["alone"]["mean"] - 5.0
    mean_headroom = {v: np.mean([cases[c]["headroom"]["mean"] for c in TEXTLESS]) for v, cases in ((1, v1), (2, v2))}
    assert mean_headroom[1] < mean_headroom[2] - 5.0
    # v2's text-less zero-filled predictions are a constant sign: one accuracy for all three cases
    assert len({round(v2[c]["zero_filled"]["mean"], 6) for c in TEXTLESS}) == 1


def test_unknown_version_is_refused(tmp_path):
    with pytest.raises(SystemExit):
        bench.main(["--versions", "3", "--out", str(tmp_path), "--quiet"])
