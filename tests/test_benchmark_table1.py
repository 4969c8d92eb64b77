"""benchmarks.table1 on a tiny configuration: every method × every case, the paper's CMU-MOSI rows
beside (labelled), JSON/CSV/PNG written, and a second start reads the finished run back."""

from __future__ import annotations

import json

import pytest

from benchmarks import figures, table1

CASES = ("{a}", "{v}", "{t}", "{a,v}", "{a,t}", "{t,v}", "avg", "complete")


@pytest.mark.slow
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
    for method, s in summary.items():  # the quick rates, each with Fig. 4's four metrics, per seed
        assert set(s["rates"]) == {"0.5", "1.0"}, method
        assert set(s["rates"]["1.0"]) == {"acc", "f1", "mae", "corr"} and len(s["rates"]["1.0"]["mae"]["per_seed"]) == 1
    growth = saved["prompt_growth"]["mult"]
    assert growth["3"]["cases"] == 7 and growth["5"]["cases"] == 31
    for m in ("3", "5"):  # MPMM: one set per case, the attention level one per case and attention module too
        assert growth[m]["mpmm"] % growth[m]["cases"] == 0 and growth[m]["mpmm_attn"] % growth[m]["cases"] == 0
    assert growth["5"]["mpmm"] / growth["3"]["mpmm"] > growth["5"]["mplmm"] / growth["3"]["mplmm"]

    fig = figures.main(["fig4", "--quick", "--seeds", "0", "--out", str(tmp_path), "--quiet"])["fig4"]
    assert fig["from"] == str(tmp_path / "table1.json")  # read from Table 1's runs, nothing retrained
    assert set(fig["curves"]) == set(figures.FIG4_METHODS)
    assert fig["curves"]["mplmm"]["0.5"] == summary["mplmm"]["rates"]["0.5"]
    assert (tmp_path / "fig4.png").stat().st_size > 1000 and (tmp_path / "fig4.csv").is_file()
    marker = tmp_path / "work" / "mult" / "s0" / "protocol.json"
    record = json.loads(marker.read_text())
    record["results"]["mplmm"]["cases"]["avg"]["non0_acc2"] = 0.123
    marker.write_text(json.dumps(record))
    again = table1.main(argv)  # read back, not retrained
    assert again["backbones"]["mult"]["mplmm"]["cases"]["avg"]["acc"]["mean"] == 12.3
    del record["results"]["mpmm_attn"]
    marker.write_text(json.dumps(record))
    third = table1.main(argv)  # a method missing: the seed runs again, its finished stages read back
    assert "mpmm_attn" in third["backbones"]["mult"]
    assert third["backbones"]["mult"]["mplmm"]["cases"]["avg"]["acc"]["mean"] != 12.3
