"""UniMSE backbone: shapes, PMF placement and effect, local pretrained T5, config, hook spec, errors."""

from __future__ import annotations

import pytest
import torch
from _backbone_io import inputs, record_shapes
from _helpers import (
    ALIGNED_AND_UNALIGNED,
    REGRESSION_AND_CLASSIFICATION,
    assert_config_rebuilds,
    assert_gradients_reach,
    assert_output_shape,
    assert_wrong_width_is_refused,
)

import backbones.unimse  # noqa: F401  (registers "unimse")
from backbones import create_backbone
from backbones.unimse import PMFFeedForward, UniMSE
from promptkit.hookspec import hook_spec_for


@pytest.fixture(scope="module")
def model() -> UniMSE:
    torch.manual_seed(0)
    return UniMSE().eval()


@ALIGNED_AND_UNALIGNED
@REGRESSION_AND_CLASSIFICATION
def test_output_shape(lengths, task, out_dim):
    net = create_backbone("unimse", out_dim=out_dim, task=task, num_layers=2, fusion_layers=1).eval()
    assert_output_shape(net, lengths, out_dim)


def test_pmf_sits_in_the_last_fusion_layers_blocks(model):
    blocks = model.fusion.t5.encoder.block
    has_pmf = [isinstance(b.layer[-1], PMFFeedForward) for b in blocks]
    assert has_pmf == [False, True, True, True]
    assert all(m.condition is None for m in model.fusion._pmf())  # cleared after each forward
    with pytest.raises(RuntimeError, match="sets its condition"):
        blocks[-1].layer[-1](torch.randn(1, 2, 64))


def test_audio_and_vision_reach_the_output_through_pmf(model):
    x = inputs()
    base = model(**x)
    for m in ("audio", "vision"):
        changed = dict(x, **{m: x[m] + 1.0})
        assert not torch.allclose(model(**changed), base), m


def test_training_step_gives_gradients_and_no_auxiliary_loss():
    net = UniMSE(num_layers=2, fusion_layers=2).train()
    net(**inputs()).sum().backward()
    assert net.auxiliary_loss() is None
    paths = ["text_proj", "enc.audio", "enc.vision", "fusion.t5.encoder.block.1.layer.1.adapter", "head"]
    assert_gradients_reach(net, paths, nonzero=False)


def test_local_pretrained_t5_is_loaded_and_its_sizes_used(tmp_path):
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(1)
    cfg = T5Config(vocab_size=8, d_model=32, d_kv=8, d_ff=64, num_layers=3, num_heads=4)
    T5EncoderModel(cfg).save_pretrained(tmp_path)
    saved = T5EncoderModel.from_pretrained(tmp_path, local_files_only=True).state_dict()
    net = create_backbone("unimse", pretrained_path=str(tmp_path), d_model=999, fusion_layers=2).eval()
    assert net.config()["d_model"] == 32 and net.config()["num_layers"] == 3
    loaded = net.fusion.t5.state_dict()
    key = "encoder.block.0.layer.0.SelfAttention.q.weight"
    torch.testing.assert_close(loaded[key], saved[key])
    assert net(**inputs()).shape == (3, 1)
    rebuilt = create_backbone("unimse", **net.config())
    assert rebuilt.config() == net.config()
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        UniMSE(pretrained_path=str(tmp_path / "absent"))


def test_config_rebuilds_an_identical_model():
    torch.manual_seed(0)
    net = create_backbone("unimse", d_model=32, num_heads=2, num_layers=2, rnn_out=8, out_dim=3, task="classification")
    assert_config_rebuilds("unimse", net.eval())


def test_hook_spec_validates_and_widths_match_the_tensors(model):
    spec = hook_spec_for(model)
    spec.validate(model)
    assert list(spec.signal) == list(model.modalities) == list(spec.encoders)
    seen = record_shapes(model, spec, inputs((50, 375, 500)))
    assert seen["text_proj"] == (3, 50, spec.signal["text"].width)
    assert seen["enc.vision.out"] == (3, spec.signal["vision"].width)
    (target,) = spec.type
    assert seen["in:fusion"] == (3, 50, target.width)
    assert spec.trainable == ["head"]


def test_fusion_takes_prefix_tokens(model):
    x = torch.randn(2, 10, 64)
    cond = torch.randn(2, 64)
    out = model.fusion(torch.cat([torch.randn(2, 4, 64), x], dim=1), condition=cond)
    assert out.shape == (2, 14, 64)
    assert not torch.allclose(out[:, 4:], model.fusion(x, condition=cond))


def test_wrong_feature_size_and_missing_text_are_clear_errors(model):
    assert_wrong_width_is_refused(model, "text", 768, expected=300)
    with pytest.raises(KeyError, match="needs a 'text' modality"):
        UniMSE(feature_dims={"audio": 5, "vision": 20})
    with pytest.raises(ValueError, match="divisible by num_heads"):
        UniMSE(d_model=30, num_heads=4)


def test_spec_dicts_follow_the_modality_order_when_text_is_not_first():
    net = UniMSE(feature_dims={"vision": 20, "text": 300}, num_layers=1).eval()
    spec = hook_spec_for(net)
    spec.validate(net)
    assert list(spec.signal) == list(spec.encoders) == ["vision", "text"]
    assert net(**inputs(dims=net.feature_dims)).shape == (3, 1)
