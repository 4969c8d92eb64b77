"""benchmarks.table1 on a tiny configuration: every method × every case, the paper's CMU-MOSI rows
beside (labelled), JSON/CSV/PNG written, and a second start reads the finished run back."""

from __future__ import annotations

import json

from benchmarks import table1

CASES = ("{a}", "{v}", "{t}", "{a,v}", "{a,t}", "{t,v}", "avg", "complete")


def test_table1_code_path_runs_end_to_end_and_resumes(tmp_path):
    argv = ["--quick", "--seeds", "0", "--out", str(tmp_path), "--work", str(tmp_path / "work"), "--quiet"]
    payload = table1.main(argv)
    summary = payload["backbones"]["mult"]
    assert list(summary) == list(table1.METHODS)  # the paper's order, ours beside
    for method, s in summary.items():
        assert set(s["cases"]) == set(CASES), method
        for cell in s["cases"].values():
            assert 0.0 <= cell["acc"]["mean"] <= 100.0 and len(cell["acc"]["per_seed"]) == 1
    assert summary["zero_filled"]["trainable_params"] == 0 and summary["ms_mean"]["trainable_params"] == 0
    assert summary["mpmm"]["trainable_params"] > 0 and summary["lb"]["trainable_params"] > 0
    saved = json.loads((tmp_path / "table1.json").read_text())
    assert "NOT CMU-MOSI" in saved["data"] and "CMU-MOSI" in saved["paper"]["source"]
    assert set(saved["paper"]["rows"]) >= {"LB", "MS", "MD", "MCTN", "MMIN", "MPMM", "Ours"}
    assert len((tmp_path / "table1.csv").read_text().splitlines()) == 1 + len(table1.METHODS) * len(CASES)
    assert (tmp_path / "table1.png").stat().st_size > 1000
    marker = tmp_path / "work" / "mult" / "s0" / "protocol.json"
    record = json.loads(marker.read_text())
    record["results"]["mplmm"]["cases"]["avg"]["non0_acc2"] = 0.123
    marker.write_text(json.dumps(record))
    again = table1.main(argv)  # read back, not retrained
    assert again["backbones"]["mult"]["mplmm"]["cases"]["avg"]["acc"]["mean"] == 12.3
