"""MCTN (backbones.mctn) and its baseline method (promptkit.methods.mctn_method).

Tiny sizes throughout: MOSI feature widths (text 300, audio 5, vision 20) with 4-8 steps and a
hidden size of 8; the method runs one epoch on 24/12/12 synthetic samples."""

from __future__ import annotations

import pytest
import torch

import backbones.mctn  # noqa: F401  (registers the backbone "mctn" and MCTN's hook spec)
import promptkit
import promptkit.methods.mctn_method
from backbones import create_backbone, is_backbone
from backbones.mctn import MCTN, RepeatDecoder, masked_mse
from promptkit.data import make_synthetic_mosi
from promptkit.evaluation import evaluate_protocol
from promptkit.evaluation.protocol import COMPLETE
from promptkit.methods import TrainedMethod, get_method
from promptkit.modalities import ModalitySet
from promptkit.recipes import from_dict

DIMS = {"text": 300, "audio": 5, "vision": 20}
LENGTHS = {"text": 6, "audio": 7, "vision": 8}
SMALL = dict(hidden_size=8, dropout=0.0)


def _x(batch: int = 4, seed: int = 0, dims=DIMS, lengths=LENGTHS) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(batch, lengths[m], d, generator=g) for m, d in dims.items()}


def _model(**cfg) -> MCTN:
    torch.manual_seed(0)
    return MCTN(**{**SMALL, **cfg})


def _mask(*rows: tuple[bool, bool, bool]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.bool)


# --- the backbone ---------------------------------------------------------------------------------
@pytest.mark.parametrize("task,out_dim", [("regression", 1), ("classification", 4)])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_output_shape_for_three_modalities(task, out_dim, cell):
    model = _model(task=task, out_dim=out_dim, cell=cell)
    assert model.modalities == ("text", "audio", "vision")
    assert (model.source, model.chain) == ("text", ("audio", "vision"))  # the others, in order
    for mode in (model.train, model.eval):
        mode()
        out = model(**_x())
        assert out.shape == (4, out_dim) and torch.isfinite(out).all()
    out = model(**_x(), mask=_mask(*[(True, False, True)] * 4))
    assert out.shape == (4, out_dim)


def test_registered_and_defaults_are_mosi_shaped():
    assert is_backbone("mctn")
    model = create_backbone("mctn")
    assert isinstance(model, MCTN) and model.feature_dims == DIMS
    assert (model.source, model.hidden_size, model.cell) == ("text", 32, "gru")
    assert len(model.encoders) == 2 and set(model.decoders) == {"audio", "vision"}


def test_a_missing_non_source_modality_has_no_effect_on_the_prediction():
    model = _model().eval()
    x = _x()
    full = model(**x)
    other = {**x, "audio": torch.randn_like(x["audio"]) * 10, "vision": torch.zeros_like(x["vision"])}
    torch.testing.assert_close(model(**other), full)
    for row in [(True, False, True), (True, True, False), (True, False, False)]:
        torch.testing.assert_close(model(**x, mask=_mask(*[row] * 4)), full)


def test_a_missing_source_falls_back_on_the_zero_input():
    model = _model().eval()
    x = _x()
    zeroed = {**x, "text": torch.zeros_like(x["text"])}
    torch.testing.assert_close(model(**x, mask=_mask(*[(False, True, True)] * 4)), model(**zeroed))


def test_translation_and_cycle_losses_have_gradients_in_training_and_are_none_in_eval():
    model = _model().train()
    model(**_x())
    parts = model.loss_parts
    assert set(parts) == {"translate_audio", "translate_vision", "cycle_text"}
    assert all(torch.isfinite(v) and v > 0 for v in parts.values())
    expected = model.translation_weight * (parts["translate_audio"] + parts["translate_vision"]) + (
        model.cycle_weight * parts["cycle_text"])
    aux = model.auxiliary_loss()
    torch.testing.assert_close(aux, expected)
    aux.backward()
    for path in ("decoders.audio", "decoders.vision", "cycle.embed", "cycle.encoder", "cycle.decoder",
                 "encoders.0", "encoders.1", "embed"):
        grads = [p.grad for p in model.get_submodule(path).parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), path
        assert any(g.abs().sum() > 0 for g in grads), path
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.head.parameters())  # aux only

    model.eval()
    model(**_x())
    assert model.auxiliary_loss() is None and model.loss_parts == {}


def test_loss_weights_scale_the_auxiliary_loss():
    model = _model(translation_weight=0.0, cycle_weight=2.0).train()
    model(**_x())
    torch.testing.assert_close(model.auxiliary_loss(), 2.0 * model.loss_parts["cycle_text"])


def test_a_sample_whose_target_is_missing_contributes_nothing():
    model = _model().train()
    x = _x(batch=4)
    mask = _mask((True, True, False), (True, True, True), (True, False, True), (True, True, True))
    model(**x, mask=mask)
    first = {k: v.detach().clone() for k, v in model.loss_parts.items()}
    # the missing targets' features change: no loss changes
    changed = {**x, "vision": x["vision"].clone(), "audio": x["audio"].clone()}
    changed["vision"][0] += 100.0
    changed["audio"][2] -= 100.0
    model(**changed, mask=mask)
    for k, v in model.loss_parts.items():
        torch.testing.assert_close(v, first[k], msg=k)
    # each translation loss is the mean over the samples that have its target
    keep_vision, keep_audio = [1, 2, 3], [0, 1, 3]
    model(**{m: t[keep_vision] for m, t in x.items()})
    torch.testing.assert_close(first["translate_vision"], model.loss_parts["translate_vision"])
    model(**{m: t[keep_audio] for m, t in x.items()})
    torch.testing.assert_close(first["translate_audio"], model.loss_parts["translate_audio"])
    model(**x)
    torch.testing.assert_close(first["cycle_text"], model.loss_parts["cycle_text"])  # the source is always there


def test_masked_mse_without_any_available_sample_is_zero_and_attached():
    pred = torch.randn(3, 2, 4, requires_grad=True)
    loss = masked_mse(pred, torch.randn(3, 2, 4), torch.zeros(3))
    assert loss.item() == 0.0 and loss.requires_grad
    with pytest.raises(ValueError, match="translation of shape"):
        masked_mse(pred, torch.randn(3, 5, 4), torch.ones(3))


def test_repeat_decoder_decodes_to_the_requested_length():
    dec = RepeatDecoder(8, 5, "lstm", num_layers=2)
    assert dec(torch.randn(3, 8), 11).shape == (3, 11, 5)
    with pytest.raises(ValueError, match=r"context \(B, 8\)"):
        dec(torch.randn(3, 7), 4)


def test_config_round_trip():
    model = _model(source="audio", chain=["vision"], cell="lstm", num_layers=2, head_hidden=6,
                   translation_weight=0.5, cycle_weight=0.25, task="classification", out_dim=3).eval()
    cfg = model.config()
    assert cfg["chain"] == ["vision"] and cfg["source"] == "audio"
    clone = create_backbone("mctn", **cfg).eval()
    assert clone.config() == cfg
    clone.load_state_dict(model.state_dict())
    x = _x()
    torch.testing.assert_close(clone(**x), model(**x))
    assert set(model.decoders) == {"vision"} and len(model.encoders) == 1


@pytest.mark.parametrize("cfg,error,match", [
    (dict(source="speech"), KeyError, "source modality 'speech'"),
    (dict(chain=["text"]), ValueError, "distinct modalities other than the source"),
    (dict(chain=["audio", "audio"]), ValueError, "distinct modalities"),
    (dict(chain=["depth"]), KeyError, "unknown modality"),
    (dict(chain=[]), ValueError, "at least one modality"),
    (dict(cell="rnn"), ValueError, "cell must be one of"),
    (dict(feature_dims={"text": 4}), ValueError, "at least 2 modalities"),
])
def test_bad_configs_are_refused(cfg, error, match):
    with pytest.raises(error, match=match):
        MCTN(**cfg)


def test_wrong_inputs_are_refused():
    model = _model()
    x = _x()
    with pytest.raises(ValueError, match=r"text features must have shape \(B, T, 300\)"):
        model(**{**x, "text": torch.randn(4, 6, 10)})
    with pytest.raises(ValueError, match=r"shape \(B, 3\)"):
        model(**x, mask=torch.ones(4, 2, dtype=torch.bool))


def test_hook_spec_wraps_and_a_prompted_step_trains_the_head_only():
    dims = {"text": 12, "audio": 5, "vision": 7}
    backbone = _model(feature_dims=dims)
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    prompter = promptkit.wrap(backbone)
    g = torch.Generator().manual_seed(0)
    x = {m: torch.randn(6, LENGTHS[m], d, generator=g) for m, d in dims.items()}
    mask = ModalitySet().sample_masks(6, 0.7, g)
    opt = torch.optim.Adam([p for p in prompter.parameters() if p.requires_grad], lr=1e-2)
    out = prompter(**x, mask=mask)
    assert out.shape == (6, 1)
    out.pow(2).mean().backward()
    opt.step()
    after = backbone.state_dict()
    assert any(not torch.equal(after[k], before[k]) for k in after if k.startswith("head."))
    assert all(torch.equal(after[k], before[k]) for k in after if not k.startswith("head."))


# --- the method -----------------------------------------------------------------------------------
SEQ = {"text": 4, "audio": 5, "vision": 6}


@pytest.fixture(scope="module")
def data():
    return make_synthetic_mosi(sizes=(24, 12, 12), seq_lens=SEQ)


@pytest.fixture(scope="module")
def recipe():
    return from_dict({
        "backbone": {"name": "mctn", "config": {"hidden_size": 8}},
        "data": {"source": "synthetic", "sizes": {"train": 24, "valid": 12, "test": 12},
                 "synthetic": {"seq_lens": SEQ}},
        "pretrain": {"epochs": 1, "batch_size": 12},
        "prompt": {"epochs": 1, "batch_size": 12, "eta": 0.7},
    })


@pytest.fixture(scope="module")
def trained(recipe, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("mctn")
    return get_method("mctn")(recipe, data, None, out / "run", device="cpu", progress=False,
                              mctn_config={"dropout": 0.0})


def test_method_trains_every_parameter_from_scratch(trained, recipe):
    assert isinstance(trained, TrainedMethod) and trained.name == "mctn"
    model = trained.modules["mctn"]
    assert isinstance(model, MCTN) and not model.training
    assert model.hidden_size == 8 and model.dropout == 0.0  # the recipe's config, then mctn_config
    assert trained.trainable_params == sum(p.numel() for p in model.parameters())
    assert trained.info["eta"] == recipe.prompt.eta and trained.info["best_epoch"] == 1


def test_method_evaluates_through_the_protocol(trained, data):
    test = data.splits["test"]
    result = evaluate_protocol(trained.forward, test, "mosi", rates=(0.5, 1.0))
    assert COMPLETE in result.cases and "avg" in result.cases
    assert all(v == v for v in result.cases[COMPLETE].values())  # no NaN
    ms = ModalitySet(test.modalities)
    for case in ms.incomplete_cases:  # every case that keeps the source predicts as the complete one
        if "text" in case.available:
            torch.testing.assert_close(result.predictions[case.name], result.predictions[COMPLETE])
    text_only = ms.case(["text"]).name
    assert text_only in result.cases


def test_method_forward_zeroes_missing_inputs(trained, data):
    test = data.splits["test"]
    feats = {m: x[:4] for m, x in test.features.items()}
    mask = _mask(*[(False, True, True)] * 4)
    model = trained.modules["mctn"]
    zeroed = {**feats, "text": torch.zeros_like(feats["text"])}
    torch.testing.assert_close(trained.forward(feats, mask), model(**zeroed))
