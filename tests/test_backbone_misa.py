"""MISA backbone: shapes, its three training losses, config round trip, hook spec, input errors."""

from __future__ import annotations

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

import backbones.misa  # noqa: F401  (registers "misa")
from backbones import create_backbone
from backbones.misa import MISA, cmd, diff_loss
from promptkit.hookspec import hook_spec_for


@ALIGNED_AND_UNALIGNED
@REGRESSION_AND_CLASSIFICATION
def test_output_shape(lengths, task, out_dim):
    assert_output_shape(create_backbone("misa", out_dim=out_dim, task=task).eval(), lengths, out_dim)


def test_training_losses_are_finite_weighted_and_differentiable():
    torch.manual_seed(0)
    model = MISA(diff_weight=0.3, sim_weight=1.0, recon_weight=1.0).train()
    model(**inputs(batch=5))
    parts, aux = model.loss_parts, model.auxiliary_loss()
    assert set(parts) == {"diff", "sim", "recon"}
    assert all(torch.isfinite(v) and v.dim() == 0 for v in parts.values())
    torch.testing.assert_close(aux, 0.3 * parts["diff"] + parts["sim"] + parts["recon"])
    aux.backward()
    assert_gradients_reach(model, ["shared", "private.audio", "recon.vision", "project.text", "extract.audio"])


def test_eval_forward_leaves_no_auxiliary_loss():
    model = MISA().train()
    model(**inputs())
    assert_eval_forward_clears_auxiliary_loss(model)


def test_cmd_is_zero_for_identical_batches_and_grows_with_a_shift():
    x = torch.randn(16, 8)
    assert cmd(x, x).item() == 0.0
    assert cmd(x, x + 1.0) > cmd(x, x + 0.1) > 0
    # the first term alone is the distance between means
    torch.testing.assert_close(cmd(x, x + 0.5, n_moments=1), torch.tensor(0.5 * 8**0.5))


def test_diff_loss_is_zero_for_uncorrelated_and_positive_for_identical():
    a = torch.tensor([[1.0], [-1.0], [1.0], [-1.0]])
    b = torch.tensor([[1.0], [1.0], [-1.0], [-1.0]])
    assert diff_loss(a, b).item() == pytest.approx(0.0, abs=1e-6)
    assert diff_loss(a, a).item() > 0.5


def test_config_rebuilds_an_identical_model():
    torch.manual_seed(0)
    model = create_backbone("misa", hidden_size=16, rnn_hidden={"text": 8}, out_dim=2, task="classification").eval()
    assert_config_rebuilds("misa", model)


def test_hook_spec_validates_and_widths_match_the_tensors():
    model = MISA().eval()
    spec = hook_spec_for(model)
    spec.validate(model)
    assert list(spec.signal) == list(model.modalities)
    seen = record_shapes(model, spec, inputs())
    for t in spec.signal.values():
        assert seen[t.path] == (3, t.width), t.path  # BD vectors
    for t in spec.type:
        assert seen["in:" + t.path] == (3, 2 * len(model.modalities), t.width)  # the private/shared stack
    assert spec.trainable == ["head"]


def test_fusion_prefix_tokens_leave_the_original_tokens_shape():
    model = MISA().eval()
    stack = torch.randn(2, 6, model.hidden_size)
    prefix = torch.randn(2, 4, model.hidden_size)
    out = model.fusion(torch.cat([prefix, stack], dim=1))
    assert out[:, 4:].shape == stack.shape
    assert not torch.allclose(out[:, 4:], model.fusion(stack))  # the tokens are attended to


def test_wrong_feature_size_names_the_expected_shape():
    assert_wrong_width_is_refused(MISA(), "audio", 6, expected=5)


def test_missing_modality_and_batch_mismatch_are_errors():
    model = MISA()
    x = inputs()
    with pytest.raises(KeyError, match="missing input 'vision'"):
        model(text=x["text"], audio=x["audio"])
    x["vision"] = x["vision"][:2]
    with pytest.raises(ValueError, match="same batch size"):
        model(**x)


def test_bad_sizes_are_rejected():
    with pytest.raises(ValueError, match="divisible by fusion_heads"):
        MISA(hidden_size=30, fusion_heads=4)
    with pytest.raises(KeyError, match="unknown modality"):
        MISA(rnn_hidden={"speech": 8})
