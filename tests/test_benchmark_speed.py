"""benchmarks.speed: the whole code path on tiny sizes; structure of the results, not speed; and
the measurement helpers of benchmarks._measure."""

from __future__ import annotations

import json

import pytest
import torch

from backbones import create_backbone
from benchmarks import _measure, speed

ROW_KEYS = {
    "backbone", "shape", "full_s", "prompt_s", "ratio", "full_flops", "prompt_flops", "flop_ratio",
    "full_peak_fraction", "prompt_peak_fraction", "full_mem_mib", "prompt_mem_mib", "bare_forward_s",
    "wrapped_disabled_forward_s", "wrap_overhead", "latency_b1_ms_bare", "latency_b1_ms_prompted",
    "throughput_b8_per_s_bare", "throughput_b8_per_s_prompted", "params", "load_average",
}


@pytest.mark.slow
def test_tiny_run_writes_json_and_plot_with_every_section(tmp_path):
    sections = tuple(s for s in speed.SECTIONS if s != "stages")  # stages: test_the_stages_section_splits_each_stage
    cfg = speed.SpeedConfig.tiny(backbones=("mult", "misa"), shapes={"unaligned": {"text": 6, "audio": 9, "vision": 11}},
                                 sections=sections)
    result = speed.run(cfg, log=lambda _: None)
    written = speed.write_results(result, tmp_path / "speed_cpu.json")
    data = json.loads(written["json"].read_text())
    assert written["png"].is_file() and written["png"].stat().st_size > 0

    assert {"cpu", "torch_threads", "torch", "load_average_start", "load_average_end"} <= set(data["machine"])
    assert data["matmul"]["flops_per_s"] > 0 and data["goals"] == speed.GOALS
    assert [r["backbone"] for r in data["mult"]] == ["mult"]
    assert sorted(r["backbone"] for r in data["backbones"]) == ["misa", "mult"]
    for r in data["backbones"]:
        assert ROW_KEYS <= set(r), ROW_KEYS - set(r)
        assert r["full_flops"] > 0 and r["prompt_flops"] > 0
        assert r["ratio"] == pytest.approx(r["prompt_s"] / r["full_s"])
        assert r["full_peak_fraction"] == pytest.approx(r["full_flops"] / r["full_s"] / data["matmul"]["flops_per_s"])
        assert r["full_mem_mib"] > 0 and r["prompt_mem_mib"] > 0

    for r in data["backbones"]:
        if r["backbone"] == "mult":
            for step in ("full", "prompt"):
                b = r[f"{step}_breakdown"]
                assert set(b["share"]) == {"attention", "linear", "dropout", "layer_norm", "other"}
                assert sum(b["share"].values()) == pytest.approx(1.0)
                assert b["linear_flops"] > 0 and b["seconds"]["linear"] > 0

    [mmgm] = data["mmgm"]  # one entry per measured shape
    assert mmgm["shape"] == "unaligned"
    assert mmgm["max_abs_diff_vs_loop"] < 1e-5  # the loop baseline computes the same thing
    assert mmgm["forward_speedup"] > 0 and mmgm["train_speedup"] > 0

    scaling = data["scaling"]
    assert [r["modalities"] for r in scaling] == [2, 3]
    assert [r["cases"] for r in scaling] == [3, 7]
    steps = [r["per_case_prompt_params"] for r in scaling]
    assert steps[1] / steps[0] == pytest.approx(7 * 3 / (3 * 2))  # (2^M - 1) sets of M targets
    speed.print_tables(data)  # renders without error


def test_op_categories():
    assert _measure.op_category("aten::mm") == "linear"
    assert _measure.op_category("aten::bmm") == "attention"
    assert _measure.op_category("aten::_scaled_dot_product_flash_attention_for_cpu") == "attention"
    assert _measure.op_category("aten::native_layer_norm_backward") == "layer_norm"
    assert _measure.op_category("aten::mm_something_else") == "other"  # aten names match exactly
    assert _measure.op_category("aten::copy_") == "other"


def test_interleaved_medians_and_peak_memory():
    calls = []
    t = _measure.interleaved_medians(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=1, device=torch.device("cpu")
    )
    assert calls == ["a", "b"] + ["a", "b"] * 3  # warm-up, then rounds in turn
    assert t["a"]["n"] == 3 and t["a"]["min_s"] <= t["a"]["median_s"]
    held = []
    mib = _measure.peak_memory(lambda: held.append(torch.ones(1 << 20)), torch.device("cpu")) / 2**20
    assert mib == pytest.approx(4.0, rel=0.05)


def test_bad_config_is_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="unknown section"):
        speed.SpeedConfig.tiny(sections=("mult", "speedup"))
    with pytest.raises(ValueError, match="lengths for"):
        speed.SpeedConfig.tiny(shapes={"aligned": {"text": 5}})
    with pytest.raises(SystemExit, match="unknown shape"):
        speed.config_from_args(speed.parse_args(["--tiny", "--shapes", "wide"]))


def test_the_reference_section_names_what_to_install_without_mmsa(monkeypatch):
    from benchmarks import _speed_reference

    monkeypatch.setattr(_speed_reference, "mmsa_models_dir", lambda: None)
    result = speed.run(speed.SpeedConfig.tiny(sections=("reference",)), log=lambda s: None)
    rows = result["reference"]
    assert [r["shape"] for r in rows] == ["aligned", "unaligned"]
    for r in rows:
        assert r["mmsa_missing"] == "pip install --no-deps MMSA==2.2.1" and set(r["train_step_s"]) == {"ours"}
        rl = r["roofline"]["ours"]
        # the roofline: FLOPs at the matmul rate plus bytes at the copy bandwidth
        want = rl["flops"] / result["matmul"]["flops_per_s"] + rl["bytes"] / result["bandwidth"]["bytes_per_s"]
        assert rl["flops"] > 0 and rl["bytes"] > 0 and abs(rl["roofline_s"] - want) < 1e-12


def test_mmsa_mult_is_built_with_our_configuration():
    from benchmarks._mmsa_reference import mmsa_models_dir, mmsa_mult

    if mmsa_models_dir() is None:
        pytest.skip("MMSA is not installed (pip install --no-deps MMSA==2.2.1)")
    ours = create_backbone("mult", feature_dims={"text": 12, "audio": 5, "vision": 7}, d_model=8, num_heads=2,
                           layers=2)
    theirs = mmsa_mult(ours)
    shapes = sorted(tuple(p.shape) for p in theirs.parameters())
    assert shapes == sorted(tuple(p.shape) for p in ours.parameters())
    x = {"text": torch.randn(3, 6, 12), "audio": torch.randn(3, 6, 5), "vision": torch.randn(3, 6, 7)}
    assert theirs.eval()(x["text"], x["audio"], x["vision"])["M"].shape == (3, 1)


@pytest.mark.slow
def test_the_stages_section_splits_each_stage_of_the_main_job():
    result = speed.run(speed.SpeedConfig.tiny(sections=("stages",)), log=lambda s: None)
    st = result["stages"]
    assert st["recipe"] == "recipes/mult-synth.toml" and "NOT CMU-MOSI" in st["data"]
    assert list(st["methods"]) == ["mplmm", "head_only", "full_finetune"] and st["train_samples"] == 16
    for r in st["methods"].values():
        assert r["epochs"] == 1 and r["train_s"] > 0 and r["valid_s"] > 0
        assert r["train_s"] + r["valid_s"] + r["setup_and_rest_s"] == pytest.approx(r["wall_s"])
    runs = st["methods"]
    assert st["prompts_over_full_finetune"] == pytest.approx(runs["mplmm"]["wall_s"] / runs["full_finetune"]["wall_s"])
    speed.print_tables(result)


def test_speed_targets_read_each_figure_from_its_file_and_judge_it(tmp_path):
    from benchmarks import readme, speed_targets

    before, after = tmp_path / "before", tmp_path / "after"
    for folder, wall, mplmm, ft, ev, ratio in ((before, 569.0, 277.0, 85.0, 151.0, 0.7), (after, 150.0, 50.0, 45.0,
                                                                                            25.0, 0.1)):
        folder.mkdir()
        (folder / "main_job.json").write_text(json.dumps({"wall_seconds": wall, "peak_rss_mib": 900.0, "seconds": {
            "mplmm_s": mplmm, "full_finetune_s": ft, "eval_s": ev}}))
        (folder / "speed_cpu.json").write_text(json.dumps({"machine": {"cpu": "x", "cores": 2, "torch": "t"},
                                                           "reference": [{"shape": "aligned", "train_ratio": ratio,
                                                                          "step_over_roofline": {"ours": 2.5}}]}))
    (before / "table1.json").write_text(json.dumps({"seconds": 1946.0}))
    assert speed_targets.main(["--before-dir", str(before), "--after-dir", str(after), "--before-commit", "abc",
                               "--suite-seconds", "190", "--suite-tests", "900"]) == 0
    rows = {r["target"]: r for r in json.loads((after / "speed_cpu.json").read_text())["targets"]["rows"]}
    wall = rows["main job wall time"]
    assert (wall["before"], wall["after"], wall["met"]) == (569.0, 150.0, True)
    stage = rows["MPLMM stage / full fine-tuning stage (main job)"]
    assert stage["before"] == pytest.approx(277 / 85) and stage["after"] == pytest.approx(50 / 45) and stage["met"]
    assert rows["MulT train step / its roofline, aligned"]["met"] is False  # 2.5 > 2
    assert rows["Table 1, CPU default"]["before"] == pytest.approx(1946 / 60) and rows["Table 1, CPU default"]["after"] is None
    assert rows["test suite"]["after"] == 190 and rows["main job peak memory"]["met"] is None
    text = readme.speed_targets(json.loads((after / "speed_cpu.json").read_text()))
    assert "| main job wall time | ≤ 180 s | 569 s | 150 s | yes |" in text and "commit abc" in text
