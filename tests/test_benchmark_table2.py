"""benchmarks.table2 runs end to end on a tiny configuration and writes its files."""

from __future__ import annotations

import json

from benchmarks import table2


def test_table2_code_path_runs_end_to_end(tmp_path):
    payload = table2.main(
        ["--quick", "--epochs", "1", "--seeds", "0", "1", "--backbones", "mult,mmim", "--out", str(tmp_path), "--quiet",
         "--device", "cpu"]
    )
    assert set(payload["summary"]) == {"mult", "mmim"}
    for name, s in payload["summary"].items():
        for col in table2.COLUMNS:
            mean, std = s[col]
            assert 0.0 <= mean <= 100.0 and std >= 0.0
        assert 0 < s["prompt_share"] < s["trainable_share"] < 1
    saved = json.loads((tmp_path / "table2.json").read_text())
    assert "NOT CMU-MOSI" in saved["data"]
    assert (tmp_path / "table2.png").stat().st_size > 1000
    rows = (tmp_path / "table2.csv").read_text().splitlines()
    assert len(rows) == 1 + 4  # header + 2 backbones x 2 seeds
