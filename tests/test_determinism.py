"""A seeded prompt step is reproducible on several CPU threads: the prompts' per-sample selection
has a fixed-order backward (an index with repeated entries accumulated its gradient in an order
that varied with thread timing, so two runs of one recipe drifted apart)."""

from __future__ import annotations

import torch

import promptkit
from backbones import create_backbone
from promptkit.prompter.signal import pick

DIMS = {"text": 30, "audio": 5, "vision": 20}


def test_pick_selects_like_an_index_and_sums_its_gradient_over_the_batch():
    pair = torch.randn(2, 4, 3, requires_grad=True)
    generated = torch.tensor([True, False, True, True, False])
    out = pick(pair, generated)
    assert torch.equal(out, pair[generated.long()])
    w = torch.randn_like(out)
    (out * w).sum().backward()
    assert torch.allclose(pair.grad[1], w[generated].sum(0)) and torch.allclose(pair.grad[0], w[~generated].sum(0))
    assert pick(torch.randn(2, 3), generated).shape == (5, 3)  # vector prompts (B, d)


def test_prompt_gradients_are_bit_identical_from_run_to_run_on_two_threads():
    torch.set_num_threads(2)  # the conftest fixture puts it back to one
    torch.manual_seed(0)
    backbone = create_backbone("mult", feature_dims=DIMS, d_model=30, num_heads=5, layers=2)
    prompter = promptkit.wrap(backbone)
    prompter.train()
    g = torch.Generator().manual_seed(0)
    b, t = 256, 20
    feats = {m: torch.randn(b, t, d, generator=g) for m, d in DIMS.items()}
    mask = torch.rand(b, 3, generator=g) > 0.5
    mask[:, 0] |= ~mask.any(1)
    y = torch.randn(b, generator=g)
    trainable = [(n, p) for n, p in prompter.named_parameters() if p.requires_grad]
    runs = []
    for _ in range(4):
        torch.manual_seed(1)
        prompter.zero_grad(set_to_none=True)
        out = prompter(mask=mask, **feats)
        ((out.reshape(-1) - y) ** 2).mean().backward()
        runs.append({n: p.grad.clone() for n, p in trainable if p.grad is not None})
    signal = [n for n in runs[0] if "signal_prompts" in n]
    assert signal  # the prompts whose selection this is about received gradients
    differ = [n for n in runs[0] if not all(torch.equal(runs[0][n], r[n]) for r in runs[1:])]
    assert differ == []
