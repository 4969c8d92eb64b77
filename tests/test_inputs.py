"""Inputs and configs are checked where they enter: no raw torch message, no silent coercion."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import promptkit
from backbones import create_backbone
from promptkit import PrompterConfig

DIMS = {"text": 6, "audio": 3, "vision": 4}


def _x(dtype=torch.float32):
    return {m: torch.randn(2, 5, d).to(dtype) for m, d in DIMS.items()}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_a_float_dtype_other_than_the_weights_is_refused_naming_both(dtype):
    model = create_backbone("mult", feature_dims=DIMS, d_model=8, num_heads=2, layers=1)
    with pytest.raises(TypeError, match=f"text features have dtype {dtype} but the model's weights are torch.float32"):
        model(**_x(dtype))
    prompter = promptkit.wrap(model)
    with pytest.raises(TypeError, match=f"dtype {dtype} but the model's weights"):
        prompter(**_x(dtype))


def test_integer_and_numpy_inputs_are_refused_with_what_to_do():
    model = create_backbone("mult", feature_dims=DIMS, d_model=8, num_heads=2, layers=1)
    with pytest.raises(TypeError, match=r"floating-point tensor, got dtype torch.int64; convert with x.float\(\)"):
        model(**{**_x(), "audio": torch.ones(2, 5, 3, dtype=torch.long)})
    with pytest.raises(TypeError, match=r"numpy.ndarray \(convert it with torch.from_numpy"):
        promptkit.wrap(model)(**{**_x(), "vision": np.zeros((2, 5, 4), np.float32)})


@pytest.mark.parametrize("key,value,message", [
    ("signal", "false", "signal must be a bool, got 'false'"),
    ("type", 0, "type must be a bool"),
    ("prompt_length", True, "prompt_length must be an int, got True"),
    ("prompt_length", 16.0, "prompt_length must be an int"),
    ("init_std", float("nan"), "init_std must be a finite float, got nan"),
    ("reconstruction_weight", float("inf"), "reconstruction_weight must be a finite float"),
    ("dropout", "0.1", "dropout must be a finite float, got '0.1'"),
    ("init_scale", 1, "init_scale must be a str"),
])
def test_prompter_config_values_of_the_wrong_type_or_not_finite_are_refused(key, value, message):
    with pytest.raises(TypeError, match=message):
        PrompterConfig(**{key: value})
    with pytest.raises(TypeError, match=message):
        PrompterConfig.from_dict({key: value})


def test_an_int_where_a_float_is_expected_is_accepted_as_that_float():
    assert PrompterConfig(init_std=1).init_std == 1.0 and isinstance(PrompterConfig(init_std=1).init_std, float)
