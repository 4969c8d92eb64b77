"""MMIN (Zhao et al., ACL 2021): the backbone (shapes, masking, losses, config) and the method
(one epoch of ``fit`` on tiny synthetic data, then the evaluation protocol)."""

from __future__ import annotations

import math

import pytest
import torch
from _helpers import BASELINE_SEQ, tiny_baseline_recipe

from backbones import create_backbone, is_backbone
from backbones.mmin import MMIN
from promptkit.data import make_synthetic_mosi
from promptkit.evaluation import evaluate_protocol
from promptkit.methods import (
    get_method,
    mmin_method,  # noqa: F401  (registers the method "mmin")
)

DIMS3 = {"text": 12, "audio": 5, "vision": 7}
DIMS4 = {**DIMS3, "depth": 3}
SMALL = dict(d_model=8, hidden_size=8, ae_hidden=16, ae_bottleneck=6, head_hidden=8, dropout=0.0)
SEQ = BASELINE_SEQ


def _inputs(dims: dict[str, int], batch: int = 5, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(batch, 3 + i, d, generator=g) for i, (m, d) in enumerate(dims.items())}


def _model(dims, **kw) -> MMIN:
    torch.manual_seed(0)
    return MMIN(feature_dims=dims, **{**SMALL, **kw})


@pytest.mark.parametrize("dims", [DIMS3, DIMS4], ids=["M3", "M4"])
@pytest.mark.parametrize("readout", ["imagined", "latent"])
def test_output_shapes(dims, readout):
    model = _model(dims, out_dim=3, task="classification", readout=readout).eval()
    x = _inputs(dims)
    mask = torch.ones(5, len(dims), dtype=torch.bool)
    mask[0, 0] = mask[1, 1:] = False
    assert model(**x).shape == (5, 3)
    assert model(**x, mask=mask).shape == (5, 3)


@pytest.mark.parametrize("dims", [DIMS3, DIMS4], ids=["M3", "M4"])
@pytest.mark.parametrize("training", [False, True])
def test_missing_content_has_no_effect(dims, training):
    model = _model(dims, readout="imagined").train(training)
    x = _inputs(dims)
    mask = torch.ones(5, len(dims), dtype=torch.bool)
    mask[:, 1] = False  # the second modality missing everywhere
    mask[2, 0] = False  # and the first of sample 2
    other = dict(x)
    other[model.modalities[1]] = torch.full_like(x[model.modalities[1]], float("nan"))
    other[model.modalities[0]] = x[model.modalities[0]].clone()
    other[model.modalities[0]][2] = 1e3
    torch.testing.assert_close(model(**x, mask=mask), model(**other, mask=mask))


def test_latent_readout_ignores_missing_content_too():
    model = _model(DIMS3, readout="latent").eval()
    x = _inputs(DIMS3)
    mask = torch.tensor([[True, False, True]] * 5)
    other = {**x, "audio": torch.randn_like(x["audio"]) * 50}
    torch.testing.assert_close(model(**x, mask=mask), model(**other, mask=mask))


def test_auxiliary_loss_trains_both_cras_and_is_none_in_eval():
    model = _model(DIMS3, imagination_weight=0.5, cycle_weight=2.0).train()
    x = _inputs(DIMS3)
    mask = torch.tensor([[True, False, True], [False, True, True], [True, True, False], [True, True, True],
                         [False, False, True]])
    model(**x, mask=mask)
    aux = model.auxiliary_loss()
    assert aux is not None and aux.dim() == 0 and math.isfinite(aux.item()) and aux.item() > 0
    aux.backward()
    for name in ("forward_cra", "backward_cra"):
        grads = [p.grad for p in getattr(model, name).parameters()]
        assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads), name
    model.eval()
    model(**x, mask=mask)
    assert model.auxiliary_loss() is None


def test_imagination_loss_is_zero_without_missing_modalities():
    model = _model(DIMS3, cycle_weight=0.0).train()
    model(**_inputs(DIMS3))  # mask None: complete
    assert model.auxiliary_loss().item() == 0.0


def test_imagination_targets_are_detached():
    """The imagination loss alone must not move the encoders (its targets are detached, and the
    missing slots of the CRA's input are zero)."""
    model = _model(DIMS3, cycle_weight=0.0).train()
    x = _inputs(DIMS3)
    mask = torch.tensor([[True, False, False]] * 5)
    model(**x, mask=mask)
    model.auxiliary_loss().backward()
    for m in ("audio", "vision"):
        assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.encoders[m].parameters())


def test_config_round_trip_and_registry():
    assert is_backbone("mmin")
    model = _model(DIMS4, out_dim=2, task="classification", cra_blocks=3, readout="latent", pool="last")
    again = create_backbone("mmin", **model.config())
    assert again.config() == model.config()
    again.load_state_dict(model.state_dict())  # same parameter names and shapes
    x = _inputs(DIMS4)
    torch.testing.assert_close(model.eval()(**x), again.eval()(**x))


def test_default_parameter_count_mosi():
    assert sum(p.numel() for p in MMIN().parameters()) == 127_521


@pytest.mark.parametrize(
    "kw, error",
    [
        (dict(feature_dims={"text": 4}), "at least 2 modalities"),
        (dict(cra_blocks=0), "at least one autoencoder"),
        (dict(readout="mean"), "readout"),
        (dict(pool="avg"), "pool"),
        (dict(cycle_weight=-1.0), "cycle_weight"),
        (dict(d_model=0), "positive"),
    ],
)
def test_bad_config_errors(kw, error):
    with pytest.raises(ValueError, match=error):
        MMIN(**{"feature_dims": DIMS3, **kw})


def test_bad_mask_and_features_errors():
    model = _model(DIMS3).eval()
    x = _inputs(DIMS3)
    with pytest.raises(ValueError, match="every modality missing"):
        model(**x, mask=torch.tensor([[False, False, False]] + [[True] * 3] * 4))
    with pytest.raises(ValueError, match=r"shape \(B, 3\)"):
        model(**x, mask=torch.ones(5, 2, dtype=torch.bool))
    with pytest.raises(KeyError, match="missing input"):
        model(text=x["text"], audio=x["audio"])


# --- the method ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def recipe():
    return tiny_baseline_recipe()


@pytest.fixture(scope="module")
def data():
    return make_synthetic_mosi(sizes=(24, 12, 12), seq_lens=SEQ)


@pytest.fixture(scope="module")
def trained(recipe, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("mmin")
    return get_method("mmin")(recipe, data, "unused.safetensors", out, device="cpu", progress=False,
                              mmin_config=dict(SMALL))


def test_method_trains_and_reports(trained, data):
    model = trained.modules["mmin"]
    assert isinstance(model, MMIN) and not model.training
    assert model.feature_dims == dict(data.feature_dims)
    assert trained.trainable_params == sum(p.numel() for p in model.parameters())
    assert trained.info["best_epoch"] == 1 and trained.info["encoders_pretrained"] is False


def test_method_forward_zeroes_missing_inputs(trained, data):
    feats = {m: x[:4] for m, x in data.splits["test"].features.items()}
    mask = torch.tensor([[True, False, True]] * 4)
    noisy = {**feats, "audio": torch.full_like(feats["audio"], float("nan"))}
    with torch.no_grad():
        torch.testing.assert_close(trained.forward(feats, mask), trained.forward(noisy, mask))


def test_method_end_to_end_protocol(trained, data, recipe):
    with torch.no_grad():
        res = evaluate_protocol(trained.forward, data.splits["test"], recipe.data.metric, rates=(0.3, 0.7))
    assert "avg" in res.cases and len(res.rates) == 2
    for metrics in (*res.cases.values(), *res.rates.values()):
        assert all(math.isfinite(v) for v in metrics.values())


def test_method_refuses_a_config_against_the_data(recipe, data, tmp_path):
    with pytest.raises(ValueError, match="out_dim"):
        get_method("mmin")(recipe, data, "unused", tmp_path, device="cpu", progress=False,
                           mmin_config={"out_dim": 4})


def test_hook_spec_wraps_mmin_and_trains_only_the_head():
    """What tests/test_backbone_specs.py checks of every registered backbone."""
    import promptkit
    from promptkit.modalities import ModalitySet

    torch.manual_seed(0)
    backbone = create_backbone("mmin", feature_dims=DIMS3)
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    prompter = promptkit.wrap(backbone)
    trainable = {n for n, p in backbone.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("head.") for n in trainable)
    g = torch.Generator().manual_seed(0)
    x = {m: torch.randn(8, t, d, generator=g) for (m, d), t in zip(DIMS3.items(), (6, 9, 11))}
    mask = ModalitySet().sample_masks(8, 0.7, g)
    mask[0] = torch.tensor([True, False, False])
    opt = torch.optim.Adam([p for p in prompter.parameters() if p.requires_grad], lr=1e-2)
    out = prompter(**x, mask=mask)
    assert out.shape == (8, 1)
    opt.zero_grad()
    out.pow(2).mean().backward()
    opt.step()
    after = backbone.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items() if k not in trainable)
    assert any(not torch.equal(after[n], before[n]) for n in trainable)
