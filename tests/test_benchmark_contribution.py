"""benchmarks.contribution: removing one part of a trained prompter, and putting it back exactly."""

from __future__ import annotations

import pytest
import torch

import promptkit
from backbones import create_backbone
from benchmarks.contribution import PARTS, removed

DIMS = {"text": 6, "audio": 3, "vision": 4}


@pytest.mark.parametrize("part", PARTS[1:])
def test_removing_a_part_changes_the_output_and_restores_it_after(part):
    torch.manual_seed(0)
    backbone = create_backbone("mult", feature_dims=DIMS, d_model=10, num_heads=2, layers=1).eval()
    prompter = promptkit.wrap(backbone, config=promptkit.PrompterConfig(prompt_length=3, init_std=0.5)).eval()
    x = {m: torch.randn(5, 4, d) for m, d in DIMS.items()}
    mask = torch.tensor([[True, False, False], [False, True, True], [True, True, False], [False, False, True],
                         [True, True, True]])
    with torch.no_grad():
        before = prompter(**x, mask=mask)
        with removed(prompter, part):
            without = prompter(**x, mask=mask)
        after = prompter(**x, mask=mask)
    assert torch.equal(before, after)
    assert not torch.allclose(before, without)
    if part == "no_mmgm":  # only rows that miss a modality are touched by MMGM
        assert torch.allclose(before[4], without[4])
