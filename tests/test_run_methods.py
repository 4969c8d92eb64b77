"""``run_pipeline`` / ``promptkit run --method``: the baselines train beside the prompts and are
scored on the same fixed masks, with paired comparisons and trainable counts."""

from __future__ import annotations

import pytest
from _helpers import tiny_recipe_dict

from promptkit.recipes import RecipeError, from_dict, load_recipe_data
from promptkit.experiment.pipeline import ZERO_FILLED, check_methods, run_pipeline


def _recipe(**prompt):
    return from_dict(tiny_recipe_dict(sizes=(32, 16, 24), prompt={"epochs": 1, "batch_size": 16,
                                                                 "prompter": {"prompt_length": 3}, **prompt},
                                      eval={"missing_rates": [0.5]}))


def test_methods_given_to_the_pipeline_are_trained_and_scored_on_the_same_masks(tmp_path):
    recipe = _recipe()
    out = run_pipeline(recipe, load_recipe_data(recipe), tmp_path, progress=False, device="cpu",
                       methods=["mplmm", "ms_mean", "md_mean"])
    assert set(out["results"]) == {ZERO_FILLED, "mplmm", "ms_mean", "md_mean"}
    assert set(out["paired"]) == {"mplmm_vs_zero_filled", "ms_mean_vs_zero_filled", "md_mean_vs_zero_filled",
                                  "mplmm_vs_ms_mean", "mplmm_vs_md_mean"}
    assert out["trainable"]["ms_mean"]["trainable_params"] == 0  # a substitution at test time only
    assert out["trainable"]["md_mean"]["trainable_share"] == pytest.approx(1.0)  # every backbone weight
    assert (tmp_path / "md_mean" / "run.json").is_file()


def test_recipe_baselines_run_by_default_and_unknown_methods_are_named(tmp_path):
    recipe = _recipe(methods=["mplmm", "ms_zero"])
    out = run_pipeline(recipe, load_recipe_data(recipe), tmp_path, progress=False, device="cpu")
    assert set(out["results"]) == {ZERO_FILLED, "mplmm", "ms_zero"}
    with pytest.raises(RecipeError, match=r"\[prompt\] methods has unknown method 'ms_maen'; did you mean 'ms_mean'"):
        _recipe(methods=["mplmm", "ms_maen"])
    with pytest.raises(KeyError, match="unknown method"):
        check_methods(["mplmm", "mctn_v9"])
