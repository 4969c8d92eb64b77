"""Friction where a user's own model meets promptkit (issue 23, items 4-10): each test fails on the
code before the fix - the shipped recipes' ``type_positions``, bare-parameter heads, ``features``
keywords the forward does not take, widths behind ``nn.Sequential``, the errors that name the
setting to change, and the stage of ``promptkit run`` that failed."""

from __future__ import annotations

import pytest
import torch
from _helpers import tiny_recipe_toml, write_recipe
from test_foreign_backbones import LateFusionGRU, gru_spec
from torch import nn

from promptkit.data import make_synthetic_mosi
from promptkit.recipes import from_dict, load
from promptkit.train.prompt_stage import prompt_tune

SEQ = {"text": 5, "audio": 6, "vision": 7}
DIMS = {"text": 12, "audio": 5, "vision": 6}


@pytest.fixture(scope="module")
def data():
    return make_synthetic_mosi(sizes=(24, 12, 12), seq_lens=SEQ, feature_dims=DIMS)


def _recipe(prompter: dict | None = None):
    return from_dict({
        "data": {"source": "synthetic", "sizes": {"train": 24, "valid": 12, "test": 12}},
        "prompt": {"epochs": 1, "batch_size": 12, "prompter": {"prompt_length": 3, **(prompter or {})}},
    })


def _gru() -> LateFusionGRU:
    torch.manual_seed(0)
    return LateFusionGRU({"lang": DIMS["text"], "acoustic": DIMS["audio"], "visual": DIMS["vision"]})


# --- 4: the shipped recipes' type_positions = "prefix" on a model without prefix_len_arg ----------


def test_a_shipped_recipes_prompter_table_trains_a_foreign_model_falling_back_to_shift(data, tmp_path):
    shipped = load("mult-synth").prompt.prompter
    assert shipped["type_positions"] == "prefix"
    recipe = _recipe({**shipped, "prompt_length": 3})
    with pytest.warns(UserWarning, match=r"falls back to 'shift'.*\[prompt.prompter\] type_positions"):
        prompter, _ = prompt_tune(recipe, data, _gru(), tmp_path, hooks=gru_spec("M"), progress=False)
    assert prompter.config.type_positions == "shift"


# --- 7: a head of bare nn.Parameters; an empty trainable --------------------------------------


class BareParameterHead(LateFusionGRU):
    """LateFusionGRU whose head is LMF-style bare parameters ``fusion_weights``/``fusion_bias``."""

    def __init__(self, dims: dict[str, int], hidden: int = 8):
        super().__init__(dims, hidden, output="tensor")
        del self.head
        self.fusion_weights = nn.Parameter(torch.randn(3 * hidden, 1) * 0.1)
        self.fusion_bias = nn.Parameter(torch.zeros(1))
        self.head = lambda h: h @ self.fusion_weights + self.fusion_bias


def test_trainable_names_bare_parameters_which_train_and_round_trip_in_the_adapter(data, tmp_path):
    torch.manual_seed(0)
    model = BareParameterHead({"lang": DIMS["text"], "acoustic": DIMS["audio"], "visual": DIMS["vision"]})
    before = model.fusion_weights.detach().clone()
    spec = {**gru_spec(), "trainable": ["fusion_weights", "fusion_bias"]}
    prompter, _ = prompt_tune(_recipe(), data, model, tmp_path, hooks=spec, progress=False)
    trained = {n for n, p in prompter.named_parameters() if p.requires_grad}
    assert {"backbone.fusion_weights", "backbone.fusion_bias"} <= trained
    assert not any(n.startswith("backbone.rnn") for n in trained)
    assert not torch.equal(model.fusion_weights.detach(), before)
    state = prompter.adapter_state_dict()
    assert torch.equal(state["backbone.fusion_weights"], model.fusion_weights.detach())
    import promptkit

    loaded = promptkit.MissingModalityPrompter.from_pretrained(prompter.unwrap(), tmp_path / "adapter")
    assert torch.equal(loaded.backbone.fusion_weights, model.fusion_weights)


def test_a_trainable_name_that_is_neither_module_nor_parameter_suggests_both():
    import promptkit

    model = BareParameterHead({"lang": 4, "acoustic": 4, "visual": 4})
    with pytest.raises(KeyError, match=r"trainable 'fusion_weight' is neither a module nor a parameter.*fusion_weights"):
        promptkit.wrap(model, hooks={**gru_spec(), "trainable": ["fusion_weight"]}, feature_dims=DIMS)


def test_an_empty_trainable_with_every_prompt_off_names_trainable(data, tmp_path):
    from promptkit.prompter import PrompterConfig

    off = PrompterConfig(generative=False, signal=False, type=False)
    spec = {**gru_spec("M"), "trainable": []}
    with pytest.raises(ValueError, match=r"nothing to train.*trainable = \[\]"):
        prompt_tune(_recipe(), data, _gru(), tmp_path, hooks=spec, config=off, progress=False)


# --- 10: errors that name the setting to change --------------------------------------------------


def test_type_on_with_no_type_targets_names_the_recipe_setting():
    import promptkit

    spec = {**gru_spec("M"), "type": []}
    with pytest.raises(ValueError, match=r"\[prompt.prompter\] type = false"):
        promptkit.wrap(_gru(), hooks=spec, feature_dims=DIMS)


def test_an_unknown_key_in_a_hook_target_lists_the_allowed_keys():
    from promptkit.hookspec import HookSpec

    with pytest.raises(KeyError, match=r"unknown TypeTarget key\(s\) \['prefix_len'\].*allowed: \['path', 'layout'"):
        HookSpec.from_dict({"features": {"a": "a"}, "type": [{"path": "x", "prefix_len": "n"}]})
    with pytest.raises(KeyError, match=r"unknown SignalTarget key\(s\) \['shape'\]"):
        HookSpec.from_dict({"features": {"a": "a"}, "signal": {"a": {"path": "x", "shape": "BTD"}}})


# --- 8: a features keyword the forward does not take; the CLI's error line -----------------------


def test_a_features_keyword_the_forward_does_not_take_is_refused_at_wrap_naming_what_it_takes():
    import promptkit

    spec = {**gru_spec("M"), "features": {"text": "text", "audio": "acoustic", "vision": "visual"}}
    with pytest.raises(ValueError, match=r"\{'text': 'text'\}.*forward does not take; it takes \['lang', 'acoustic'"):
        promptkit.wrap(_gru(), hooks=spec, feature_dims=DIMS)


def test_the_cli_error_line_names_the_exception_type():
    from promptkit.cli import _one_line

    assert _one_line(KeyError("text")) == "text (KeyError)"
    assert _one_line(ValueError("bad\n  value")) == "bad value (ValueError)"


# --- 9: widths through nn.Sequential -------------------------------------------------------------


def test_width_is_read_through_a_sequential_of_linear_relu_layernorm():
    from promptkit.prompter.widths import module_width

    misa_style = nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.LayerNorm(8))
    assert module_width(misa_style, "output") == 8
    assert module_width(misa_style, "input") == 12
    assert module_width(nn.Sequential(nn.Linear(12, 8), nn.ReLU()), "output") == 8
    assert module_width(nn.Sequential(nn.ReLU()), "output") is None


def test_run_quiet_still_says_where_the_results_went(monkeypatch, tmp_path, capsys):
    from promptkit.cli import main
    from promptkit.experiment import pipeline

    monkeypatch.setattr(pipeline, "run_pipeline", lambda *a, **k: None)
    out = tmp_path / "run"
    assert main(["run", "--recipe", "mult-synth", "--out", str(out), "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == f"results in {out}"


# --- the stage a run failed in, on the CLI's error line ------------------------------------------


@pytest.fixture
def tiny_run(tmp_path):
    return write_recipe(tmp_path, tiny_recipe_toml(
        sizes=(16, 8, 8), prompt={"epochs": 1, "batch_size": 8, "methods": ["mplmm"]}, eval={"missing_rates": [0.5]},
    ))


def test_a_failing_method_is_named_on_the_error_line_and_the_api_keeps_the_exception(tiny_run, tmp_path,
                                                                                      monkeypatch, capsys):
    """Before: 'promptkit: error: text (KeyError)', with no word of which stage raised it."""
    from promptkit.cli import main
    from promptkit.experiment.pipeline import failed_stage, run_pipeline
    from promptkit.recipes import load_recipe_data

    def broken(*args, **kwargs):
        raise KeyError("text")

    monkeypatch.setattr("promptkit.methods._prompter_fit.prompt_tune", broken)
    monkeypatch.delenv("PROMPTKIT_TRACEBACK", raising=False)
    assert main(["run", "--recipe", str(tiny_run), "--out", str(tmp_path / "cli"), "--device", "cpu", "--quiet"]) == 2
    assert capsys.readouterr().err == "promptkit: error: in stage 'mplmm': text (KeyError)\n"

    recipe = load(tiny_run)
    with pytest.raises(KeyError) as info:  # the Python API raises the original exception, type and all
        run_pipeline(recipe, load_recipe_data(recipe), tmp_path / "api", device="cpu", progress=False)
    assert type(info.value) is KeyError and info.value.args == ("text",)
    assert failed_stage(info.value) == "mplmm"
    if hasattr(info.value, "add_note"):
        assert info.value.__notes__ == ["in stage 'mplmm' of promptkit run"]


@pytest.mark.parametrize("stage, target", [("pretrain", "pretrain"), ("evaluation", "compare_protocols")])
def test_a_failing_pretrain_or_evaluation_is_named(tiny_run, tmp_path, monkeypatch, capsys, stage, target):
    from promptkit.cli import main
    from promptkit.experiment import pipeline

    def broken(*args, **kwargs):
        raise RuntimeError("out of disk")

    monkeypatch.setattr(pipeline, target, broken)
    monkeypatch.delenv("PROMPTKIT_TRACEBACK", raising=False)
    argv = ["run", "--recipe", str(tiny_run), "--out", str(tmp_path / "run"), "--device", "cpu", "--quiet"]
    if stage == "evaluation":
        argv += ["--method", "head_only"]
    assert main(argv) == 2
    assert capsys.readouterr().err == f"promptkit: error: in stage {stage!r}: out of disk (RuntimeError)\n"


def test_stage_keeps_the_innermost_name_and_the_traceback():
    from promptkit.cli import _one_line
    from promptkit.experiment.pipeline import failed_stage, stage

    with pytest.raises(ValueError) as info:
        with stage("outer"), stage("inner"):
            raise ValueError("bad")
    assert failed_stage(info.value) == "inner" and _one_line(info.value) == "in stage 'inner': bad (ValueError)"
    assert info.traceback[-1].name == "test_stage_keeps_the_innermost_name_and_the_traceback"
    assert failed_stage(ValueError("elsewhere")) is None and _one_line(ValueError("x")) == "x (ValueError)"
