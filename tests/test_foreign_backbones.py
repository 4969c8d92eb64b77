"""Models promptkit never saw, through ``wrap``, ``prompt_tune`` and the protocol with no hand-written
forward: dict and tuple outputs, their own argument names, hooks that never fire, layouts declared
wrong where axis sizes coincide, torch's own modules as hook points, wrapping twice, CGGM's task."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import promptkit
from promptkit.data import make_synthetic_mosi
from promptkit.evaluation import (
    COMPLETE,
    evaluate_protocol,
    prompted_forward,
    zero_filled_forward,
)
from promptkit.hookspec import CallRef, HookSpec, call_backbone, select_output
from promptkit.prompter import HookError
from promptkit.prompter.widths import module_width
from promptkit.recipes import from_dict
from promptkit.train.prompt_stage import prompt_tune

SEQ = {"text": 5, "audio": 6, "vision": 7}
ARGS = {"text": "lang", "audio": "acoustic", "visual": "visual"}


class LateFusionGRU(nn.Module):
    """A GRU per modality (time first, as torch's default), late fusion; arguments lang/acoustic/visual.

    ``output``: "dict" returns ``{"M": pred, "feats": h}``, "tuple" returns ``(pred, h)``, "tensor" pred.
    No ``feature_dims`` attribute: the dims must come from the data.
    """

    def __init__(self, dims: dict[str, int], hidden: int = 8, output: str = "dict", skip_text_proj: bool = False):
        super().__init__()
        self.output, self.skip_text_proj = output, skip_text_proj
        self.proj = nn.ModuleDict({k: nn.Conv1d(d, hidden, 1) for k, d in dims.items()})  # (B, d, T)
        self.rnn = nn.ModuleDict({k: nn.GRU(hidden, hidden) for k in dims})  # (T, B, d)
        self.head = nn.Linear(3 * hidden, 1)

    def forward(self, lang: torch.Tensor, acoustic: torch.Tensor, visual: torch.Tensor):
        outs = []
        for key, x in (("lang", lang), ("acoustic", acoustic), ("visual", visual)):
            h = x.transpose(1, 2)
            if not (self.skip_text_proj and key == "lang"):
                h = self.proj[key](h)
            seq, _ = self.rnn[key](h.permute(2, 0, 1))  # (T, B, d)
            outs.append(seq[-1])
        h = torch.cat(outs, dim=-1)
        pred = self.head(h)
        return {"M": pred, "feats": h} if self.output == "dict" else (pred, h) if self.output == "tuple" else pred


def gru_spec(output=None, signal_layout="BDT", type_layout="TBD") -> dict:
    keys = {"text": "lang", "audio": "acoustic", "vision": "visual"}
    spec = {
        "features": keys,
        "signal": {m: {"path": f"proj.{k}", "layout": signal_layout} for m, k in keys.items()},
        "type": [{"path": f"rnn.{k}", "layout": type_layout} for k in keys.values()],
        "trainable": ["head"],
        "encoders": {m: {"output": f"proj.{k}", "layout": "BDT"} for m, k in keys.items()},
    }
    if output is not None:
        spec["output"] = output
    return spec


@pytest.fixture(scope="module")
def data():
    return make_synthetic_mosi(sizes=(24, 12, 12), seq_lens=SEQ, feature_dims={"text": 12, "audio": 5, "vision": 6})


def _recipe(**prompt):
    return from_dict({
        "data": {"source": "synthetic", "sizes": {"train": 24, "valid": 12, "test": 12}},
        "prompt": {"epochs": 1, "batch_size": 12, "prompter": {"prompt_length": 3}, **prompt},
    })


def _gru(data, **kw):
    torch.manual_seed(0)
    return LateFusionGRU({"lang": data.feature_dims["text"], "acoustic": data.feature_dims["audio"],
                          "visual": data.feature_dims["vision"]}, **kw)


@pytest.mark.parametrize("output,selector", [("dict", "M"), ("tuple", 0), ("tensor", None)])
def test_a_foreign_model_trains_and_is_evaluated_with_no_hand_written_forward(data, tmp_path, output, selector):
    backbone = _gru(data, output=output)
    prompter, result = prompt_tune(_recipe(), data, backbone, tmp_path, hooks=gru_spec(selector), progress=False)
    assert prompter.feature_dims == dict(data.feature_dims)  # taken from the data: the model has none
    trained = [n for n, p in prompter.named_parameters() if p.requires_grad]
    assert any(n.startswith("signal_prompts") for n in trained) and "backbone.head.weight" in trained
    res = evaluate_protocol(prompted_forward(prompter), data.splits["test"], "mosi", rates=(0.5,))
    assert res.predictions[COMPLETE].shape == (12,)
    assert len(res.case_names) == 6
    base = evaluate_protocol(zero_filled_forward(prompter.backbone, data.modalities, hooks=gru_spec(selector)),
                             data.splits["test"], "mosi", rates=())
    assert base.predictions[COMPLETE].shape == (12,)


def test_a_non_tensor_output_without_a_selector_names_the_type_and_the_spec_key(data):
    with pytest.raises(TypeError, match=r"returned a dict \(keys \['M', 'feats'\]\).*'output'"):
        promptkit.wrap(_gru(data), hooks=gru_spec(None), feature_dims=dict(data.feature_dims))(
            **{m: x[:4] for m, x in data.splits["train"].features.items()})
    with pytest.raises(KeyError, match="'pred' is not in the model's output; its keys: \\['M', 'feats'\\]"):
        select_output({"M": torch.zeros(1), "feats": torch.zeros(1)}, "pred")
    with pytest.raises(TypeError, match="index 0, but the model returned a dict"):
        select_output({"M": torch.zeros(1)}, 0)


def test_the_zero_fill_baseline_calls_the_backbone_by_its_own_argument_names(data):
    """The baseline once passed modality names as keywords: lang=/acoustic= models could not run it."""
    backbone = _gru(data, output="tensor")
    feats = {m: x[:4] for m, x in data.splits["test"].features.items()}
    mask = torch.tensor([[True, False, True]] * 4)
    got = zero_filled_forward(backbone, data.modalities, hooks=gru_spec())(feats, mask)
    audio_zero = {**feats, "audio": torch.zeros_like(feats["audio"])}
    want = backbone(lang=audio_zero["text"], acoustic=audio_zero["audio"], visual=audio_zero["vision"])
    assert torch.equal(got, want)


def test_call_backbone_is_one_path_for_names_and_outputs():
    spec = HookSpec.from_dict({"features": {"text": "lang"}, "output": "M"})
    model = lambda lang: {"M": lang * 2}
    assert torch.equal(call_backbone(model, {"text": torch.ones(2, 1)}, spec), torch.full((2, 1), 2.0))
    with pytest.raises(KeyError, match="no forward argument for modality \\['audio'\\]"):
        call_backbone(model, {"audio": torch.ones(2, 1)}, spec)


def test_a_hook_the_forward_never_runs_is_an_error_naming_it(data):
    """MMSA's MulT skips proj_l when the text dim equals d: the text signal prompts were never added."""
    prompter = promptkit.wrap(_gru(data, skip_text_proj=True, output="tensor"), hooks=gru_spec(),
                              feature_dims=dict(data.feature_dims))
    # the text features (12) do not fit the GRU (8) without the projection, so use 8-wide text here
    feats = {m: x[:4] for m, x in data.splits["train"].features.items()}
    feats["text"] = torch.randn(4, SEQ["text"], 8)
    prompter.feature_dims["text"] = 8
    with pytest.raises(HookError, match=r"signal target 'proj.lang' \(text\) ran 0 times"):
        prompter(**feats)


class TwoStepReuse(nn.Module):
    """Runs one module twice per forward: it cannot be a hook point."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4)
        self.head = nn.Linear(4, 1)

    def forward(self, text, audio):
        return self.head((self.proj(text) + self.proj(audio)).mean(1))


def test_a_hook_module_run_twice_per_forward_is_an_error():
    spec = {"features": {"text": "text", "audio": "audio"},
            "signal": {"text": "proj", "audio": "proj"}, "type": [], "trainable": ["head"]}
    prompter = promptkit.wrap(TwoStepReuse(), hooks=spec, feature_dims={"text": 4, "audio": 4},
                              config=promptkit.PrompterConfig(type=False, prompt_length=2))
    with pytest.raises(HookError, match="ran 2 times"):
        prompter(text=torch.randn(3, 5, 4), audio=torch.randn(3, 5, 4))


def _feats(batch: int, steps: int, dims: dict[str, int]) -> dict[str, torch.Tensor]:
    return {m: torch.randn(batch, steps, d) for m, d in dims.items()}


def test_a_type_target_declared_batch_first_on_a_time_first_module_raises_even_when_B_equals_T(data):
    dims = dict(data.feature_dims)
    cfg = promptkit.PrompterConfig(prompt_length=2, signal=False, generative=False)
    for batch, steps in ((4, 7), (5, 5)):  # sizes differ; sizes coincide (B = T)
        p = promptkit.wrap(_gru(data, output="tensor"), hooks=gru_spec(type_layout="BTD"), feature_dims=dims, config=cfg)
        with pytest.raises(HookError, match=r"type target 'rnn.lang' is declared BTD"):
            p(**_feats(batch, steps, dims))
        p.unwrap()
    good = promptkit.wrap(_gru(data, output="tensor"), hooks=gru_spec(), feature_dims=dims, config=cfg)
    assert good(**_feats(5, 5, dims)).shape == (5, 1)


def test_a_signal_target_declared_BTD_on_a_BDT_output_raises_even_when_T_equals_D(data):
    dims = dict(data.feature_dims)
    cfg = promptkit.PrompterConfig(prompt_length=2, type=False, generative=False)
    for steps in (6, 8):  # T != width; T = width (8)
        p = promptkit.wrap(_gru(data, output="tensor"), hooks=gru_spec(signal_layout="BTD"), feature_dims=dims,
                           config=cfg)
        with pytest.raises(HookError, match=r"signal target 'proj.lang' \(text\) is declared BTD"):
            p(**_feats(3, steps, dims))
        p.unwrap()
    good = promptkit.wrap(_gru(data, output="tensor"), hooks=gru_spec(), feature_dims=dims, config=cfg)
    assert good(**_feats(3, 8, dims)).shape == (3, 1)


def test_verification_does_not_touch_the_rng_or_the_training_mode(data):
    dims = dict(data.feature_dims)
    p = promptkit.wrap(_gru(data, output="tensor"), hooks=gru_spec(), feature_dims=dims)
    p.train()
    x = _feats(5, 5, dims)
    state = torch.random.get_rng_state()
    p.verify_hooks(x)  # B = T: a probe forward runs too
    assert torch.equal(state, torch.random.get_rng_state()) and p.backbone.training


@pytest.mark.parametrize("module,side,width", [
    (nn.TransformerEncoder(nn.TransformerEncoderLayer(12, 2, 24), 2, enable_nested_tensor=False), "input", 12),
    (nn.TransformerEncoderLayer(12, 2, 24), "input", 12),
    (nn.MultiheadAttention(12, 3), "input", 12),
    (nn.LSTM(5, 7), "output", 7),
    (nn.LSTM(5, 7, bidirectional=True), "output", 14),
    (nn.LSTM(5, 7, proj_size=3), "output", 3),
    (nn.GRU(5, 7, bidirectional=True), "output", 14),
    (nn.GRU(5, 7), "input", 5),
    (nn.Conv1d(5, 9, 1), "output", 9),
    (nn.Conv1d(5, 9, 1), "input", 5),
    (nn.Linear(5, 9), "output", 9),
    (nn.Linear(5, 9), "input", 5),
])
def test_width_inference_for_torchs_own_modules(module, side, width):
    assert module_width(module, side) == width


def test_an_lstm_output_tuple_gets_its_signal_prompt_on_the_sequence():
    class LSTMModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.ModuleDict({m: nn.LSTM(4, 6, batch_first=True) for m in ("text", "audio")})
            self.head = nn.Linear(12, 1)

        def forward(self, text, audio):
            return self.head(torch.cat([self.enc["text"](text)[0][:, -1], self.enc["audio"](audio)[0][:, -1]], -1))

    spec = {"features": {"text": "text", "audio": "audio"}, "signal": {"text": "enc.text", "audio": "enc.audio"},
            "trainable": ["head"]}
    model = LSTMModel()
    p = promptkit.wrap(model, hooks=spec, feature_dims={"text": 4, "audio": 4},
                       config=promptkit.PrompterConfig(type=False, generative=False, prompt_length=2))
    x = {"text": torch.randn(3, 5, 4), "audio": torch.randn(3, 5, 4)}
    with p.prompts_disabled():
        bare = p(**x)
    assert not torch.allclose(p(**x), bare)  # the prompt reached the LSTM's output sequence


def test_wrapping_twice_is_refused_and_unwrap_restores_everything(data):
    dims = dict(data.feature_dims)
    backbone = _gru(data, output="tensor")
    backbone.head.weight.requires_grad_(False)  # a flag of the user's own that unwrap must restore
    flags = {n: p.requires_grad for n, p in backbone.named_parameters()}
    x = _feats(3, 6, dims)
    kw = {k: x[m] for m, k in (("text", "lang"), ("audio", "acoustic"), ("vision", "visual"))}
    before = backbone(**kw)
    first = promptkit.wrap(backbone, hooks=gru_spec(), feature_dims=dims)
    with pytest.raises(RuntimeError, match=r"already wrapped.*unwrap\(\)"):
        promptkit.wrap(backbone, hooks=gru_spec(), feature_dims=dims)
    assert promptkit.unwrap(backbone) is backbone and first.unwrap() is backbone  # twice is harmless
    assert {n: p.requires_grad for n, p in backbone.named_parameters()} == flags
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in backbone.modules())
    assert torch.equal(backbone(**kw), before)
    promptkit.wrap(backbone, hooks=gru_spec(), feature_dims=dims).unwrap()  # wrapping again now works


def test_a_failed_prompt_tune_leaves_the_backbone_unwrapped(data, tmp_path):
    backbone = _gru(data, output="dict")
    flags = {n: p.requires_grad for n, p in backbone.named_parameters()}
    with pytest.raises(TypeError, match="returned a dict"):  # no output selector
        prompt_tune(_recipe(), data, backbone, tmp_path, hooks=gru_spec(None), progress=False)
    assert {n: p.requires_grad for n, p in backbone.named_parameters()} == flags
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in backbone.modules())
    prompt_tune(_recipe(), data, backbone, tmp_path / "again", hooks=gru_spec("M"), progress=False)


def test_dims_given_and_dims_of_the_backbone_must_agree():
    class WithDims(TwoStepReuse):
        feature_dims = {"text": 4, "audio": 4}

    spec = {"features": {"text": "text", "audio": "audio"}, "trainable": ["head"]}
    cfg = promptkit.PrompterConfig(signal=False, type=False, prompt_length=2)
    with pytest.raises(ValueError, match="disagree with the backbone's own feature_dims"):
        promptkit.wrap(WithDims(), hooks=spec, config=cfg, feature_dims={"text": 4, "audio": 5})
    with pytest.raises(ValueError, match=r"pass wrap\(backbone, \.\.\., feature_dims="):
        promptkit.wrap(TwoStepReuse(), hooks=spec, config=cfg)


def test_an_output_function_round_trips_by_name_and_a_lambda_is_named_at_load(tmp_path):
    spec = HookSpec.from_dict({"features": {"text": "t"}, "output": select_first})
    back = HookSpec.from_dict(spec.to_dict())  # a record, not imported (issue 24)
    assert back.output == CallRef(f"{__name__}:select_first") and back.resolved().output is select_first
    lam = HookSpec.from_dict({"features": {"text": "t"}, "output": lambda out: out[0]}).to_dict()
    with pytest.raises(ValueError, match="lambda or a local function"):
        HookSpec.from_dict(lam).resolved()


def select_first(out):
    return out[0]


def test_cggm_on_a_foreign_model_takes_the_task_from_the_data(data, tmp_path):
    recipe = from_dict({
        "data": {"source": "synthetic", "sizes": {"train": 24, "valid": 12, "test": 12}},
        "prompt": {"epochs": 1, "batch_size": 12, "prompter": {"prompt_length": 3}},
        "cggm": {"warmup_steps": 0},
    })
    backbone = _gru(data, output="tensor")
    assert not hasattr(backbone, "task")
    prompter, _ = prompt_tune(recipe, data, backbone, tmp_path, hooks=gru_spec(), cggm=True, progress=False)
    assert prompter is not None


def test_a_cggm_encoder_the_forward_never_runs_is_an_error_naming_it(tmp_path):
    data8 = make_synthetic_mosi(sizes=(24, 12, 12), seq_lens=SEQ, feature_dims={"text": 8, "audio": 5, "vision": 6})
    recipe = from_dict({
        "data": {"source": "synthetic", "sizes": {"train": 24, "valid": 12, "test": 12}},
        "prompt": {"epochs": 1, "batch_size": 12, "prompter": {"prompt_length": 3, "signal": False}},
        "cggm": {"warmup_steps": 0},
    })
    backbone = _gru(data8, output="tensor", skip_text_proj=True)
    with pytest.raises(RuntimeError, match=r"CGGM captured no representation for \{'text': 'proj.lang'\}"):
        prompt_tune(recipe, data8, backbone, tmp_path, hooks=gru_spec(), cggm=True, progress=False)
