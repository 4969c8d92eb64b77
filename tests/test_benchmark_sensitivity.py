"""benchmarks.sensitivity: the levels scale the right gains, and a level's summary pairs the prompts
with each control run by run."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from benchmarks import sensitivity
from promptkit.data.synthetic.views import VIEWS_V2
from promptkit.recipes import load_recipe_data


def test_a_level_scales_audio_and_vision_sentiment_gains_only():
    views = sensitivity.views_at(0.5)
    assert set(views) == {"audio", "vision"}
    for m in ("audio", "vision"):
        assert views[m] == {"verbal_gain": VIEWS_V2[m].verbal_gain / 2, "nonverbal_gain": VIEWS_V2[m].nonverbal_gain / 2}
    with pytest.raises(ValueError, match=">= 0"):
        sensitivity.views_at(-0.1)
    with pytest.raises(ValueError, match=">= 0"):
        sensitivity.views_at(float("nan"))


def test_level_one_is_the_main_jobs_world_and_reads_the_shipped_backbone():
    one, half = sensitivity.recipe_at(1.0), sensitivity.recipe_at(0.5)
    assert one.pretrain.checkpoint is not None and half.pretrain.checkpoint is None  # a weaker world pre-trains
    assert one.eval.missing_rates == [] and one.prompt.methods == ["mplmm", "head_only", "md_zero"]
    quick = sensitivity.recipe_at(1.0, quick=True)
    base = quick.replace(data=dataclasses.replace(
        quick.data, synthetic={k: v for k, v in quick.data.synthetic.items() if k != "views"}))
    same = load_recipe_data(quick).splits["test"]
    default = load_recipe_data(base).splits["test"]
    for m in ("text", "audio", "vision"):  # gains x 1 are the defaults: the world does not move
        assert (same.features[m] == default.features[m]).all()
    weak = load_recipe_data(sensitivity.recipe_at(0.0, quick=True)).splits["test"]
    assert (weak.features["text"] == default.features["text"]).all()
    assert not (weak.features["audio"] == default.features["audio"]).all()


def _run(seed_shift: float) -> dict:
    cases = {c: {"non0_acc2": 0.6 + seed_shift} for c in sensitivity.CASES}
    paired = {f"mplmm_vs_{c}": {k: {"mean": d + seed_shift, "se": 0.3} for k in sensitivity.CASES}
              for c, d in (("head_only", 1.0), ("md_zero", -2.0), ("zero_filled", 5.0))}
    return {"metric": "non0_acc2", "results": {m: {"cases": cases} for m in ("zero_filled", "mplmm", "head_only", "md_zero")},
            "paired": paired, "ceiling": {"{a}": {"metrics": {"non0_acc2": 0.55}}}}


def test_a_levels_summary_pairs_the_prompts_with_each_control_over_runs():
    s = sensitivity.summarize_level(0.5, [_run(0.0), _run(0.2), _run(0.4)])
    head, md = s["paired"]["mplmm_vs_head_only"]["avg"], s["paired"]["mplmm_vs_md_zero"]["avg"]
    assert math.isclose(head["mean"], 1.2) and math.isclose(md["mean"], -1.8)  # not swapped
    assert math.isclose(head["se"], 0.2 / math.sqrt(3))  # per-run means 1.0, 1.2, 1.4: sd 0.2 over 3 runs
    assert math.isclose(head["within_run_se"], 0.3)
    assert s["runs"] == 3 and math.isclose(s["ceiling"]["{a}"], 55.0) and "avg" not in s["ceiling"]
    json.dumps(s)
