"""Every registered backbone: its hook spec wraps it and one prompt-tuning step keeps it frozen."""

from __future__ import annotations

import pytest
import torch

import promptkit
from backbones import create_backbone, list_backbones
from promptkit.modalities import ModalitySet

SMALL = {"feature_dims": {"text": 12, "audio": 5, "vision": 7}}
# MCTN predicts from its source modality (text) alone, so what MMGM generates for the other modalities
# cannot reach its output and gets no gradient; its prompted step is checked in test_baseline_mctn.py.
PROMPTED = [name for name in list_backbones() if name != "mctn"]


@pytest.mark.parametrize("name", PROMPTED)
@pytest.mark.parametrize("lengths", [(6, 6, 6), (6, 9, 11)], ids=["aligned", "unaligned"])
def test_registered_spec_wraps_and_trains_one_step_with_frozen_weights(name, lengths):
    torch.manual_seed(0)
    backbone = create_backbone(name, **SMALL)
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    prompter = promptkit.wrap(backbone)
    trainable = {n for n, p in backbone.named_parameters() if p.requires_grad}
    assert trainable, f"{name}: the spec names no trainable head"
    g = torch.Generator().manual_seed(0)
    x = {m: torch.randn(8, t, d, generator=g) for (m, d), t in zip(SMALL["feature_dims"].items(), lengths)}
    mask = ModalitySet().sample_masks(8, 0.7, g)
    mask[0] = torch.tensor([True, False, False])
    opt = torch.optim.Adam([p for p in prompter.parameters() if p.requires_grad], lr=1e-2)
    out = prompter(**x, mask=mask)
    assert out.shape == (8, 1)
    loss = out.pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    after = backbone.state_dict()
    for k, v in before.items():
        if k not in trainable:
            assert torch.equal(after[k], v), f"{name}: frozen tensor {k} changed"
    changed = [n for n in trainable if not torch.equal(after[n], before[n])]
    assert changed, f"{name}: the trainable head did not move"
    for n, p in prompter.named_parameters():
        if p.requires_grad and not n.startswith("backbone."):
            assert p.grad is not None and torch.isfinite(p.grad).all(), f"{name}: {n} has no finite gradient"
