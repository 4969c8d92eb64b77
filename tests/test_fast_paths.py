"""backbones.layers fast paths: blockwise dropout attention, sparse dropout, pointwise conv."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import backbones.layers.blockwise as L
from backbones.layers import (
    PointwiseConv1d,
    dropout,
    dropout_add,
    dropout_attention,
    future_mask,
)


def _qkv(b, h, t_q, t_k, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, t, d, generator=g, dtype=torch.float64, requires_grad=True) for t in (t_q, t_k, t_k)]


MASKS = {
    "none": lambda b, h, tq, tk: None,
    "future": lambda b, h, tq, tk: future_mask(tq, tk),
    "padding": lambda b, h, tq, tk: (torch.arange(tk) >= torch.tensor([tk, tk - 3, 2])[:, None])[:, None, None, :],
    "per_head": lambda b, h, tq, tk: (torch.rand(h, tq, tk, generator=torch.Generator().manual_seed(1)) < 0.3)
    & (torch.arange(tk) > 0),
}


@pytest.mark.parametrize("mask", list(MASKS))
@pytest.mark.parametrize("t_q,t_k", [(9, 9), (7, 12), (150, 20)])
def test_dropout_attention_without_drops_equals_sdpa_forward_and_backward(mask, t_q, t_k, monkeypatch):
    monkeypatch.setattr(L, "_BLOCK_SCORES", 200)  # many blocks, rows split at 128
    q, k, v = _qkv(3, 2, t_q, t_k, 4)
    blocked = MASKS[mask](3, 2, t_q, t_k)
    got = dropout_attention(q, k, v, 1e-12, blocked)  # p > 0 takes the blockwise path; drops ~never happen
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=None if blocked is None else ~blocked)
    torch.testing.assert_close(got, want)
    g = torch.randn_like(got)
    for a, b in zip(torch.autograd.grad(got, (q, k, v), g), torch.autograd.grad(want, (q, k, v), g)):
        torch.testing.assert_close(a, b)


def test_dropout_attention_gradients_are_exact_for_its_own_dropout_pattern(monkeypatch):
    monkeypatch.setattr(L, "_BLOCK_SCORES", 64)

    def f(q, k, v):
        torch.manual_seed(5)  # the same seed, so the same pattern on every call
        return dropout_attention(q, k, v, 0.3, future_mask(q.shape[2], k.shape[2]))

    assert torch.autograd.gradcheck(f, tuple(_qkv(2, 2, 9, 12, 3)))


def test_dropout_attention_drops_at_rate_p_and_rescales():
    b, h, t = 4, 2, 200
    q = k = torch.zeros(b, h, t, 8)
    v = torch.eye(t).expand(b, h, t, t)  # output[i, j] = weight of key j for query i
    out = dropout_attention(q, k, v, 0.1)
    kept = out > 0
    assert kept.float().mean().item() == pytest.approx(0.9, abs=0.005)
    torch.testing.assert_close(out[kept], torch.full_like(out[kept], 1 / t / 0.9))
    torch.manual_seed(3)
    a = dropout_attention(q, k, v, 0.1)
    torch.manual_seed(3)
    assert torch.equal(a, dropout_attention(q, k, v, 0.1))  # reproducible under torch.manual_seed


def test_dropout_attention_rejects_bad_arguments():
    q, k, v = _qkv(1, 1, 3, 3, 2)
    with pytest.raises(ValueError, match="0 < p < 1"):
        dropout_attention(q, k, v, 0.0)
    with pytest.raises(TypeError, match="bool"):
        dropout_attention(q, k, v, 0.1, torch.zeros(3, 3))


def test_sparse_dropout_rate_scale_and_gradient():
    x = torch.ones(200_000, requires_grad=True)
    y = dropout(x, 0.25, True)
    kept = y != 0
    assert kept.float().mean().item() == pytest.approx(0.75, abs=0.005)
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / 0.75))
    y.sum().backward()
    torch.testing.assert_close(x.grad, y.detach())  # d(x * scale)/dx = scale
    assert torch.equal(dropout(x, 0.25, False), x)
    r = torch.randn(10)
    torch.testing.assert_close(dropout_add(r, torch.ones(10), 0.5, False), r + 1)
    torch.manual_seed(0)
    z = dropout_add(torch.zeros(50_000), torch.ones(50_000), 0.5, True)
    assert set(z.unique().tolist()) == {0.0, 2.0}


def test_pointwise_conv_equals_conv1d_and_copies_nothing():
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(6, 4, 1, bias=True)
    fast = PointwiseConv1d(6, 4)
    fast.load_state_dict(conv.state_dict())
    x = torch.randn(3, 10, 6)  # (B, T, C)
    out = fast(x.transpose(1, 2))
    torch.testing.assert_close(out, conv(x.transpose(1, 2)))
    assert out.transpose(1, 2).is_contiguous()  # back to (B, T, C) as a view
    with pytest.raises(ValueError, match=r"\(B, 6, T\)"):
        fast(torch.randn(3, 5, 10))
