"""Report tables follow the data's modality set; CSV schemas; PNG files."""

from __future__ import annotations

import csv
import io
import json

import pytest
import torch

from promptkit.data import MSADataset
from promptkit.evaluation import (
    ProtocolResult,
    case_columns,
    compare_protocols,
    evaluate_protocol,
    paired_rows,
    paired_to_csv,
    plot_paired,
    plot_rate_sweep,
    print_paired,
    print_table1,
    save_paired_results,
    save_protocol_results,
    table1_columns,
    table1_rows,
)
from promptkit.evaluation.report import case_ids, case_size, table1_long_rows
from promptkit.modalities import ModalitySet

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(modalities, kind="mosi", seed=0, rates=(0.5, 1.0)) -> ProtocolResult:
    g = torch.Generator().manual_seed(0)  # the same data for every model
    data = MSADataset({m: torch.randn(16, 3, 2, generator=g) for m in modalities}, torch.randn(16, generator=g), modalities)
    w = torch.randn(len(modalities), generator=torch.Generator().manual_seed(seed + 1))

    def forward(f, mask):
        return sum(w[i] * mask[:, i].float() * f[m].mean((1, 2)) for i, m in enumerate(modalities))[:, None]

    return evaluate_protocol(forward, data, kind, rates=rates)


def test_two_modalities_give_two_case_columns_and_no_paper_row():
    results = {"model": run(("text", "audio"))}
    assert table1_columns(results) == ["{t}", "{a}", "avg", "complete"]
    rows = table1_rows(results, "mosi")
    assert len(rows) == 2 and all(len(r) == 2 + 4 for r in rows)
    assert not any("paper" in r[0] for r in rows)


def test_text_audio_vision_follow_the_paper_order_and_show_its_row_for_mosi_only():
    results = {"model": run(("text", "audio", "vision"))}
    assert table1_columns(results) == ["{a}", "{v}", "{t}", "{a,v}", "{a,t}", "{t,v}", "avg", "complete"]
    rows = table1_rows(results, "mosi")
    assert [r[0] for r in rows][-2:] == ["paper MPLMM (CMU-MOSI)"] * 2 and rows[-1][2] == "63.65"
    assert not any("paper" in r[0] for r in table1_rows(results, "mosi", with_paper=False))
    other = {"model": run(("text", "audio", "depth"))}
    assert case_columns(("text", "audio", "depth")) == ["{t}", "{a}", "{a,t}", "{d}", "{d,t}", "{a,d}"]
    assert table1_columns(other)[:-2] == case_columns(("text", "audio", "depth"))
    assert not any("paper" in r[0] for r in table1_rows(other, "mosi"))


def test_old_json_without_modalities_still_gets_its_own_case_columns():
    old = run(("text", "audio")).to_dict()
    del old["modalities"]
    assert table1_columns({"m": ProtocolResult.from_dict(old)}) == ["{t}", "{a}", "avg", "complete"]


def test_protocol_csv_schema_and_json(tmp_path):
    results = {"zero": run(("text", "audio")), "prompts": run(("text", "audio"), seed=1)}
    save_protocol_results(tmp_path, results, {"data": "toy"})
    rows = list(csv.reader(io.StringIO((tmp_path / "protocol.csv").read_text())))
    assert rows[0] == ["model", "protocol", "setting", "metric", "value"]
    n_metrics = 8  # regression_metrics' keys
    assert len(rows) - 1 == 2 * (4 + 2) * n_metrics  # ({t}, {a}, avg, complete) + 2 rates, per model
    assert {r[1] for r in rows[1:]} == {"case", "missing_rate"} and {r[2] for r in rows[1:] if r[1] == "missing_rate"} == {"0.5", "1.0"}
    payload = json.loads((tmp_path / "protocol.json").read_text())
    assert payload["data"] == "toy" and "predictions" not in payload["results"]["zero"]
    assert ProtocolResult.from_dict(payload["results"]["zero"]).rates.keys() == {0.5, 1.0}


def _comparisons():
    a, b = run(("text", "audio", "vision"), seed=1), run(("text", "audio", "vision"), seed=2)
    return {"prompts − zero-fill": compare_protocols(a, b, "non0_acc2", n_boot=20)}


def test_paired_table_rows_csv_and_files(tmp_path, capsys):
    comparisons = _comparisons()
    (row,) = paired_rows(comparisons)
    d = comparisons["prompts − zero-fill"]
    assert row[0] == "prompts − zero-fill" and len(row) == 1 + 6 + 2  # cases + avg + complete, no rates
    assert row[1] == f"{d['{a}'].mean:+.2f} ± {d['{a}'].se:.2f}"  # the paper's column order: {a} first
    assert row[-1] == f"{d['complete'].mean:+.2f} ± {d['complete'].se:.2f}"
    rows = list(csv.reader(io.StringIO(paired_to_csv(comparisons).decode())))
    assert rows[0] == ["comparison", "setting", "metric", "mean", "se", "ci_low", "ci_high", "n", "method", "unit"]
    assert len(rows) - 1 == 6 + 2 + 2 and rows[1][2] == "non0_acc2"
    save_paired_results(tmp_path, comparisons)
    assert json.loads((tmp_path / "paired.json").read_text())["prompts − zero-fill"]["avg"]["method"] == "per-sample"
    print_paired(comparisons, "toy data")
    out = capsys.readouterr().out
    assert "{a,t}" in out and "avg" in out and "±" in out


def test_print_table1_names_the_data(capsys):
    print_table1({"model": run(("text", "audio"))}, "mosi", "synthetic toy")
    out = capsys.readouterr().out
    assert "synthetic toy" in out and "{t}" in out and "paper" not in out


@pytest.mark.parametrize("which", ["paired", "rate_sweep"])
def test_pngs_are_written(tmp_path, which):
    path = tmp_path / f"{which}.png"
    title = "ours on synthetic data (NOT CMU-MOSI), 16 test samples, seeds 0-2, a long description " * 2
    if which == "paired":
        plot_paired(path, _comparisons(), title)
    else:
        plot_rate_sweep(path, {"a": run(("text", "audio")), "b": run(("text", "audio"), seed=3)}, "mosi", title)
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000


# --- any modality set: long tables past six cases -------------------------------------------------

MODS4 = ("text", "audio", "vision", "pose")
MODS5 = ("text", "audio", "vision", "pose", "physio")


def test_case_columns_follow_any_set_and_can_group_by_size():
    cols = case_columns(MODS5)
    assert cols == [c.name for c in ModalitySet(MODS5).incomplete_cases] and len(set(cols)) == 30
    by_size = case_columns(MODS5, by_size=True)
    assert sorted(by_size) == sorted(cols) and [case_size(c) for c in by_size] == sorted(case_size(c) for c in cols)
    assert by_size[:5] == ["{t}", "{a}", "{v}", "{po}", "{ph}"]
    assert case_size("{a,po,t}") == 3 and case_size("avg") == 0 and case_size("complete") == 0


def test_long_rows_one_per_case_with_missing_modalities():
    results = {"zero": run(MODS4), "prompts": run(MODS4, seed=1)}
    header, rows = table1_long_rows(results, "mosi")
    assert header == ["case", "missing", "zero acc", "zero F1", "prompts acc", "prompts F1"]
    assert [r[0] for r in rows] == [*case_columns(MODS4, by_size=True), "avg", "complete"] and len(rows) == 16
    by_case = {r[0]: r for r in rows}
    # pose's initial is unique among text/audio/vision/pose: "p"
    assert by_case["{p,t}"][1] == "a,v" and by_case["{a,p,v}"][1] == "t" and by_case["complete"][1] == ""
    assert by_case["{p}"][2] == f"{100 * results['zero'].cases['{p}']['non0_acc2']:.2f}"
    assert by_case["avg"][5] == f"{100 * results['prompts'].cases['avg']['non0_f1']:.2f}"


@pytest.mark.parametrize("mods", [MODS4, MODS5], ids=["M4", "M5"])
def test_print_table1_goes_long_past_six_cases_and_explains_the_abbreviations(mods, capsys):
    results = {"zero-fill": run(mods), "prompts": run(mods, seed=1)}
    print_table1(results, "mosi", "synthetic toy")
    out = capsys.readouterr().out
    flat = " ".join(out.split())  # the caption wraps
    assert "┃ missing" in out and "acc" in out and "F1" in out
    assert ("po = pose" if "physio" in mods else "p = pose") in flat and "paper" not in out
    lines = [ln for ln in out.splitlines() if ln.startswith("│ {")]
    assert len(lines) == 2 ** len(mods) - 2  # one line per incomplete case
    print_table1(results, "mosi", "synthetic toy", layout="wide")
    wide = capsys.readouterr().out
    assert "┃ missing" not in wide and not any(ln.startswith("│ {") for ln in wide.splitlines())
    with pytest.raises(ValueError, match="layout must be one of"):
        print_table1(results, "mosi", "toy", layout="tall")


def test_three_modalities_stay_wide_unless_asked(capsys):
    results = {"model": run(("text", "audio", "vision"))}
    print_table1(results, "mosi", "toy")
    out = capsys.readouterr().out
    assert "┃ missing" not in out and "paper MPLMM" in out
    print_table1(results, "mosi", "toy", layout="long")
    out = capsys.readouterr().out
    assert "┃ missing" in out and "paper MPLMM" not in out


def test_paired_long_table_and_png_for_five_modalities(tmp_path, capsys):
    a, b = run(MODS5, seed=1), run(MODS5, seed=2)
    comparisons = {"prompts − zero-fill": compare_protocols(a, b, "non0_acc2", n_boot=10)}
    print_paired(comparisons, "toy", modalities=MODS5)
    out = capsys.readouterr().out
    rows = [ln for ln in out.splitlines() if ln.startswith("│ {")]
    assert len(rows) == 30 and "ph = physio" in " ".join(out.split()) and "│ {a,ph,po,t}" in out
    plot_paired(tmp_path / "p.png", comparisons, "toy, five modalities")
    assert (tmp_path / "p.png").read_bytes().startswith(PNG_MAGIC)


def test_protocol_json_maps_case_names_to_stable_ids(tmp_path):
    results = {"zero": run(MODS5)}
    save_protocol_results(tmp_path, results)
    payload = json.loads((tmp_path / "protocol.json").read_text())
    ms = ModalitySet(MODS5)
    assert payload["case_ids"] == case_ids(results) == {**{c.name: c.id for c in ms.incomplete_cases}, "complete": 30}
    assert set(payload["results"]["zero"]["cases"]) - {"avg"} == set(payload["case_ids"])
