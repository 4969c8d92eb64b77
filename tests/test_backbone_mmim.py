"""MMIM backbone: shapes, MI terms (BA likelihood, entropy memory, CPC), stage-1 API, config, hooks, errors."""

from __future__ import annotations

import math

import pytest
import torch
from _backbone_io import inputs, record_shapes
from _helpers import (
    ALIGNED_AND_UNALIGNED,
    REGRESSION_AND_CLASSIFICATION,
    assert_config_rebuilds,
    assert_eval_forward_clears_auxiliary_loss,
    assert_gradients_reach,
    assert_output_shape,
    assert_wrong_width_is_refused,
)

import backbones.mmim  # noqa: F401  (registers "mmim")
from backbones import create_backbone
from backbones.mmim import MMILB, MMIM, gaussian_entropy
from promptkit.hookspec import hook_spec_for


@ALIGNED_AND_UNALIGNED
@REGRESSION_AND_CLASSIFICATION
def test_output_shape(lengths, task, out_dim):
    assert_output_shape(create_backbone("mmim", out_dim=out_dim, task=task).eval(), lengths, out_dim)


def test_auxiliary_loss_is_the_published_weighted_combination_and_differentiable():
    torch.manual_seed(0)
    model = MMIM(alpha=0.1, beta=0.1).train()
    model(**inputs(batch=8))
    p, aux = model.loss_parts, model.auxiliary_loss()
    assert set(p) == {"nce", "lld", "entropy"}
    assert all(torch.isfinite(v) and v.dim() == 0 for v in p.values())
    torch.testing.assert_close(aux, 0.1 * p["nce"] - 0.1 * p["lld"] - 0.1 * p["entropy"])
    aux.backward()
    assert_gradients_reach(model, ["mmilb.audio.mu", "mmilb.vision.logvar", "cpc.text", "enc.audio", "text_enc",
                                   "fusion.hidden1"])
    assert all(not q.requires_grad for q in model.mmilb["audio"].entropy_prj.parameters())
    assert_eval_forward_clears_auxiliary_loss(model)


def test_log_likelihood_is_the_gaussian_log_density_up_to_its_constant():
    torch.manual_seed(0)
    bound = MMILB(x_dim=6, y_dim=8)
    x, y = torch.randn(5, 6), torch.randn(5, 8)
    mu, logvar = bound.mu(x), bound.logvar(x)
    exact = torch.distributions.Normal(mu, (0.5 * logvar).exp()).log_prob(y).sum(-1).mean()
    torch.testing.assert_close(bound.log_likelihood(x, y), exact + 0.5 * 8 * math.log(2 * math.pi))


def test_gaussian_entropy_matches_the_closed_form():
    g = torch.Generator().manual_seed(0)
    std = torch.tensor([0.5, 1.0, 2.0])
    samples = torch.randn(20000, 3, generator=g) * std
    assert gaussian_entropy(samples).item() == pytest.approx(std.log().sum().item(), abs=0.03)
    with pytest.raises(ValueError, match="N >= 2"):
        gaussian_entropy(samples[:1])


def test_entropy_uses_the_previous_batch_as_memory():
    torch.manual_seed(0)
    model = MMIM().train()
    x1, x2 = inputs(batch=6, seed=1), inputs(batch=6, seed=2)
    model(**x1)
    assert model._memory["audio"]["all"].shape == (6, 16 // 4)
    model(**x2)
    with_memory = model.loss_parts["entropy"].item()
    model.load_training_state({})  # forget the previous batch
    model(**x2)
    assert model.loss_parts["entropy"].item() != pytest.approx(with_memory)


def test_labels_split_the_entropy_by_polarity():
    model = MMIM().train()
    labels = torch.tensor([1.5, -2.0, 0.5, -0.3, 2.2, -1.0])
    model(**inputs(batch=6), labels=labels)
    assert set(model._memory["vision"]) == {"pos", "neg"}
    assert model._memory["vision"]["pos"].shape[0] == 3
    assert torch.isfinite(model.loss_parts["entropy"])
    with pytest.raises(ValueError, match="labels have 2 rows"):
        model(**inputs(batch=6), labels=labels[:2])


def test_mi_loss_is_the_first_stage_loss_over_the_q_networks():
    model = MMIM()
    model.eval()
    model(**inputs())
    with pytest.raises(RuntimeError, match="training mode"):
        model.mi_loss()
    model.train()
    model(**inputs(batch=6))
    loss = model.mi_loss()
    torch.testing.assert_close(loss, -model.loss_parts["lld"])
    params = model.mi_parameters()
    assert params and all(any(p is q for q in model.mmilb.parameters()) for p in params)
    loss.backward()
    assert all(p.grad is not None for p in params)


def test_config_rebuilds_an_identical_model():
    torch.manual_seed(0)
    assert_config_rebuilds("mmim", create_backbone("mmim", text_dim=32, rnn_out=8, text_pool="first", alpha=0.2).eval())


def test_hook_spec_validates_and_widths_match_the_tensors():
    model = MMIM().eval()
    spec = hook_spec_for(model)
    spec.validate(model)
    assert list(spec.signal) == list(model.modalities) == list(spec.encoders)
    x = inputs((50, 375, 500))
    seen = record_shapes(model, spec, x)
    assert seen["text_enc.proj"] == (3, 50, spec.signal["text"].width)
    assert seen["enc.audio.out"] == (3, spec.signal["audio"].width)
    for t, m in zip(spec.type, model.modalities):
        assert seen["in:" + t.path] == tuple(x[m].shape[:2]) + (t.width,), t.path
    assert spec.trainable == ["fusion.out"]


def test_lstm_target_takes_a_prefix_and_keeps_the_readout_shape():
    model = MMIM().eval()
    rnn = model.enc["audio"].rnn
    seq = torch.randn(2, 10, 5)
    out = rnn(torch.cat([torch.randn(2, 4, 5), seq], dim=1))
    assert out[:, 4:].shape == rnn(seq).shape
    assert not torch.allclose(out[:, 4:], rnn(seq))  # the prefix conditions the recurrence


def test_wrong_feature_size_and_missing_text_are_clear_errors():
    assert_wrong_width_is_refused(MMIM(), "vision", 35, expected=20)
    with pytest.raises(KeyError, match="needs a 'text' modality"):
        MMIM(feature_dims={"audio": 5, "vision": 20})
    with pytest.raises(ValueError, match="size >= 4"):
        MMIM(rnn_out=2)


def test_spec_dicts_follow_the_modality_order_when_text_is_not_first():
    model = MMIM(feature_dims={"audio": 5, "text": 300, "vision": 20})
    spec = hook_spec_for(model)
    spec.validate(model)
    assert list(spec.signal) == list(spec.encoders) == ["audio", "text", "vision"]
    assert [t.path for t in spec.type] == ["enc.audio.rnn", "text_enc.encoder", "enc.vision.rnn"]
    assert model(**inputs(dims=model.feature_dims)).shape == (3, 1)
