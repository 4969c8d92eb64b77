"""benchmarks.table2 runs end to end on a tiny configuration, writes its files, and resumes."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import table2


@pytest.mark.slow
def test_table2_code_path_runs_end_to_end_and_resumes(tmp_path):
    argv = ["--quick", "--seeds", "0", "1", "--backbones", "mult", "--out", str(tmp_path), "--quiet",
            "--device", "cpu", "--work", str(tmp_path / "work")]
    payload = table2.main(argv)
    s = payload["summary"]["mult"]
    for col in table2.COLUMNS:
        assert 0.0 <= s[col]["mean"] <= 100.0 and s[col]["se"] >= 0.0
    for key, *_ in table2.PAIRED:
        assert set(s[key]) >= {"mean", "se", "per_seed"} and len(s[key]["per_seed"]) == 2
    # the paired mean over runs is the mean of the per-run paired differences, which are the
    # differences of the two models' accuracies on the same samples
    runs = payload["per_seed"]["mult"]
    per_run = [r["incom_prompted"] - r["incom"] for r in runs]
    assert s["incom_prompted_vs_incom"]["per_seed"] == [
        __import__("pytest").approx(v, abs=1e-6) for v in per_run
    ]
    assert 0 < s["prompt_share"] < s["trainable_share"] < 1
    saved = json.loads((tmp_path / "table2.json").read_text())
    assert saved["seeds"] == [0, 1] and "NOT CMU-MOSI" in saved["data"]
    assert (tmp_path / "table2.png").stat().st_size > 1000
    rows = (tmp_path / "table2.csv").read_text().splitlines()
    assert len(rows) == 1 + 2
    # a second start reads the finished runs back instead of training again
    marker = tmp_path / "work" / "mult" / "d0" / "s1" / "protocol.json"
    record = json.loads(marker.read_text())
    record["results"]["mplmm"]["cases"]["avg"]["non0_acc2"] = 0.123
    marker.write_text(json.dumps(record))
    again = table2.main(argv)
    assert math.isclose(again["per_seed"]["mult"][1]["incom_prompted"], 12.3)


def test_update_keeps_the_other_backbones_rows_and_replaces_the_rerun_one(tmp_path):
    previous = tmp_path / "table2.json"
    old = {"data": "synthetic, seeds 0,1", "seconds": 10.0, "machine": {"cpu": "old"},
           "per_seed": {"mult": [{"seed": 0, "com": 80.0}], "misa": [{"seed": 0, "com": 49.2}]}}
    previous.write_text(json.dumps(old))
    rerun = {"misa": [{"seed": 0, "com": 80.7}, {"seed": 1, "com": 80.1}]}
    rows, measured, data = table2.kept_rows(previous, rerun, {"misa": {"seconds": 5.0, "machine": {"cpu": "new"}}},
                                            "synthetic, seeds 0,1")
    assert data == old["data"]
    assert list(rows) == ["mult", "misa"]  # the table keeps its order
    assert rows["mult"] == old["per_seed"]["mult"] and rows["misa"] == rerun["misa"]
    assert measured["mult"]["machine"] == {"cpu": "old"} and measured["misa"]["machine"] == {"cpu": "new"}
    # a rerun on fewer data seeds of the same world merges (each row keeps its data seeds) ...
    assert table2.kept_rows(previous, rerun, {}, "synthetic, seeds 0")[0]["misa"] == rerun["misa"]
    with pytest.raises(SystemExit, match="same data"):  # ... another world does not
        table2.kept_rows(previous, rerun, {}, "synthetic unaligned, seeds 0,1")
    with pytest.raises(SystemExit, match="does not exist"):
        table2.kept_rows(tmp_path / "none.json", rerun, {}, "synthetic, seeds 0,1")
