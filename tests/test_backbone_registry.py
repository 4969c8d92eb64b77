"""The backbone registry: lookup, wildcard listing, errors, config round trip (with MulT)."""

from __future__ import annotations

import pytest
import torch

import backbones.mult  # noqa: F401  (registers "mult")
from backbones import (
    MSABackbone,
    create_backbone,
    is_backbone,
    list_backbones,
    register_backbone,
)
from backbones.mult import MulT


def test_create_backbone_builds_mult_with_defaults():
    model = create_backbone("mult")
    assert isinstance(model, MulT) and isinstance(model, MSABackbone)
    assert model.feature_dims == {"text": 300, "audio": 5, "vision": 20}
    assert model.modalities == ("text", "audio", "vision")
    assert (model.out_dim, model.task, model.d_model) == (1, "regression", 30)
    assert model.auxiliary_loss() is None


def test_list_backbones_filters_by_wildcard():
    assert "mult" in list_backbones("m*")
    assert "mult" in list_backbones()
    assert "mult" not in list_backbones("x*")
    assert list_backbones() == sorted(list_backbones())
    assert is_backbone("mult") and not is_backbone("mul")


def test_unknown_backbone_error_lists_known_names():
    with pytest.raises(KeyError, match=r"unknown backbone 'transformerx'.*'mult'"):
        create_backbone("transformerx")


def test_registering_a_name_twice_is_an_error():
    with pytest.raises(ValueError, match="'mult' is already registered"):

        @register_backbone
        def mult():
            return None


def test_unknown_keyword_is_rejected():
    with pytest.raises(TypeError, match="d_modle"):
        create_backbone("mult", d_modle=30)


def test_config_rebuilds_an_equal_model():
    cfg = dict(
        feature_dims={"text": 16, "audio": 5, "vision": 7},
        out_dim=8,
        task="classification",
        d_model=12,
        num_heads=3,
        layers=2,
        cross_attn_dropout={"audio": 0.05},
        out_dropout=0.2,
        attn_mask=False,
    )
    model = create_backbone("mult", **cfg).eval()
    rebuilt = create_backbone("mult", **model.config()).eval()
    assert rebuilt.config() == model.config()
    assert model.config()["cross_attn_dropout"] == {"text": 0.1, "audio": 0.05, "vision": 0.0}
    rebuilt.load_state_dict(model.state_dict())
    x = {m: torch.randn(2, 6, d) for m, d in cfg["feature_dims"].items()}
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(**x), model(**x))
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in model.state_dict().items()
    }
