"""Friction where a user's own model meets promptkit (issue 23, items 4-10): each test fails on the
code before the fix - the shipped recipes' ``type_positions``, bare-parameter heads, ``features``
keywords the forward does not take, widths behind ``nn.Sequential``, and the errors that name the
setting to change."""

from __future__ import annotations

import dataclasses

import pytest
import torch
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
