"""MulT and its transformer layers: attention against a reference, masks, shapes, hooks."""

from __future__ import annotations

import math

import pytest
import torch

import backbones.mult  # noqa: F401  (registers "mult")
from backbones.layers import (
    MultiheadAttention,
    SinusoidalPositions,
    TransformerEncoder,
    future_mask,
    sinusoidal_table,
)
from backbones.mult import MulT
from promptkit.hookspec import hook_spec_for, resolve_module

DIMS = {"text": 300, "audio": 5, "vision": 20}


def _features(b: int, lengths=(50, 50, 50), dims=DIMS, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(b, t, d, generator=g) for (m, d), t in zip(dims.items(), lengths)}


def _reference_attention(mha: MultiheadAttention, q_in, k_in, v_in, blocked=None):
    """Plain softmax attention with the module's weights; ``blocked`` (B, T_q, T_k), True = blocked."""
    E, H = mha.embed_dim, mha.num_heads
    w, b = mha.in_proj.weight, mha.in_proj.bias
    q = q_in @ w[:E].T + b[:E]
    k = k_in @ w[E : 2 * E].T + b[E : 2 * E]
    v = v_in @ w[2 * E :].T + b[2 * E :]
    B, Tq, _ = q.shape
    Tk = k.shape[1]
    hd = E // H
    q = q.reshape(B, Tq, H, hd).permute(0, 2, 1, 3)
    k = k.reshape(B, Tk, H, hd).permute(0, 2, 1, 3)
    v = v.reshape(B, Tk, H, hd).permute(0, 2, 1, 3)
    scores = q @ k.transpose(-1, -2) / math.sqrt(hd)
    if blocked is not None:
        scores = scores.masked_fill(blocked[:, None], float("-inf"))
    out = torch.softmax(scores, dim=-1) @ v
    out = out.permute(0, 2, 1, 3).reshape(B, Tq, E)
    return out @ mha.out_proj.weight.T + mha.out_proj.bias


# --- attention ---------------------------------------------------------------------------------


@pytest.mark.parametrize("use_padding", [False, True])
def test_self_attention_matches_reference_softmax(use_padding):
    torch.manual_seed(0)
    mha = MultiheadAttention(30, 5).eval()
    x = torch.randn(3, 7, 30)
    pad = torch.zeros(3, 7, dtype=torch.bool)
    if use_padding:
        pad[0, 5:] = True
        pad[2, :3] = True
    got = mha(x, key_padding_mask=pad if use_padding else None)
    want = _reference_attention(mha, x, x, x, pad[:, None, :].expand(3, 7, 7))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("use_padding", [False, True])
def test_cross_attention_matches_reference_softmax(use_padding):
    torch.manual_seed(1)
    mha = MultiheadAttention(60, 5).eval()
    q, kv = torch.randn(2, 6, 60), torch.randn(2, 11, 60)
    pad = torch.zeros(2, 11, dtype=torch.bool)
    if use_padding:
        pad[1, 4:] = True
    got = mha(q, kv, key_padding_mask=pad if use_padding else None)
    want = _reference_attention(mha, q, kv, kv, pad[:, None, :].expand(2, 6, 11))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_cross_attention_with_distinct_value_and_future_mask_matches_reference():
    torch.manual_seed(2)
    mha = MultiheadAttention(30, 3).eval()
    q, k, v = torch.randn(2, 4, 30), torch.randn(2, 9, 30), torch.randn(2, 9, 30)
    fm = future_mask(4, 9)
    got = mha(q, k, v, attn_mask=fm)
    want = _reference_attention(mha, q, k, v, fm.expand(2, 4, 9))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_attention_rejects_bad_masks_and_widths():
    mha = MultiheadAttention(30, 5)
    x = torch.randn(2, 4, 30)
    with pytest.raises(ValueError, match=r"\(B, T_k\) = \(2, 4\)"):
        mha(x, key_padding_mask=torch.zeros(2, 5, dtype=torch.bool))
    with pytest.raises(TypeError, match="bool"):
        mha(x, key_padding_mask=torch.zeros(2, 4))
    with pytest.raises(ValueError, match="divisible"):
        MultiheadAttention(30, 4)


def test_future_mask_matches_mult_rule():
    m = future_mask(3, 5)  # |T_k - T_q| = 2: query i sees keys j <= i + 2
    assert m.tolist() == [
        [False, False, False, True, True],
        [False, False, False, False, True],
        [False, False, False, False, False],
    ]
    assert torch.equal(future_mask(4, 4), torch.ones(4, 4, dtype=torch.bool).triu(1))


# --- positions and encoder ---------------------------------------------------------------------


def test_sinusoidal_table_values_and_cache_growth():
    table = sinusoidal_table(10, 30)
    half = 15
    for t, i in [(0, 0), (3, 4), (9, 14)]:
        w = 10000 ** (-i / (half - 1))
        assert table[t, i].item() == pytest.approx(math.sin((t + 1) * w), abs=1e-6)
        assert table[t, half + i].item() == pytest.approx(math.cos((t + 1) * w), abs=1e-6)
    assert sinusoidal_table(4, 7)[:, -1].abs().sum() == 0  # odd width: zero last column

    pos = SinusoidalPositions(30, init_size=8)
    assert pos(5).shape == (5, 30) and pos.table.shape[0] == 8
    long = pos(300)
    assert pos.table.shape[0] == 512
    torch.testing.assert_close(long, sinusoidal_table(300, 30))
    assert "table" not in pos.state_dict()


def test_encoder_shapes_self_and_cross():
    enc = TransformerEncoder(30, 5, layers=2).eval()
    assert enc(torch.randn(2, 9, 30)).shape == (2, 9, 30)
    assert enc(torch.randn(2, 9, 30), torch.randn(2, 40, 30)).shape == (2, 9, 30)
    with pytest.raises(ValueError, match=r"x_q must have shape \(B, T, 30\)"):
        enc(torch.randn(2, 9, 31))
    with pytest.raises(ValueError, match="batch size 3"):
        enc(torch.randn(2, 9, 30), torch.randn(3, 4, 30))


def test_encoder_causal_fast_path_equals_explicit_future_mask():
    torch.manual_seed(3)
    enc = TransformerEncoder(30, 5, layers=2, attn_mask=True).eval()
    x = torch.randn(2, 8, 30)
    no_pad = torch.zeros(2, 8, dtype=torch.bool)  # forces the explicit-mask path
    torch.testing.assert_close(enc(x), enc(x, key_padding_mask=no_pad), atol=1e-5, rtol=1e-5)
    # causal: the first step cannot see later steps
    y = x.clone()
    y[:, 1:] += 1.0
    torch.testing.assert_close(enc(x)[:, 0], enc(y)[:, 0], atol=1e-5, rtol=1e-5)


def test_encoder_padded_keys_have_no_effect():
    torch.manual_seed(4)
    enc = TransformerEncoder(30, 5, layers=2).eval()
    q, kv = torch.randn(2, 5, 30), torch.randn(2, 12, 30)
    pad = torch.zeros(2, 12, dtype=torch.bool)
    pad[:, 8:] = True
    kv2 = kv.clone()
    kv2[:, 8:] = torch.randn(2, 4, 30) * 10
    torch.testing.assert_close(enc(q, kv, key_padding_mask=pad), enc(q, kv2, key_padding_mask=pad))
    assert not torch.allclose(enc(q, kv), enc(q, kv2))


@pytest.mark.parametrize("attn_mask", [False, True])
@pytest.mark.parametrize("cross", [False, True])
def test_last_step_only_equals_the_full_encoders_last_step(attn_mask, cross):
    """The last layer run on the last query only: the same value, for self and cross attention, with the
    future mask, key padding and a prompt prefix; and the same gradients."""
    torch.manual_seed(5)
    full = TransformerEncoder(30, 5, layers=3, attn_mask=attn_mask, positions="skip_padding").eval()
    last = TransformerEncoder(30, 5, layers=3, attn_mask=attn_mask, positions="skip_padding",
                              last_step_only=True).eval()
    last.load_state_dict(full.state_dict())  # no parameter of its own
    x = torch.randn(3, 9, 30, requires_grad=True)
    kv = torch.randn(3, 6, 30) if cross else None
    pad = torch.zeros(3, 6 if cross else 9, dtype=torch.bool)
    pad[1, -2:] = True
    for kwargs in ({}, {"key_padding_mask": pad}, {} if cross else {"prefix_len": 2}):
        want = full(x, kv, **kwargs)[:, -1:]
        got = last(x, kv, **kwargs)
        assert got.shape == (3, 1, 30)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        g_want = torch.autograd.grad(want.sum(), x)[0]
        g_got = torch.autograd.grad(got.sum(), x)[0]
        torch.testing.assert_close(g_got, g_want, atol=1e-5, rtol=1e-5)
    assert last.returns_prompt_rows is False and full.returns_prompt_rows is True


def test_encoder_rejects_all_padded_sample():
    enc = TransformerEncoder(30, 5, layers=1)
    pad = torch.zeros(2, 6, dtype=torch.bool)
    pad[1] = True
    with pytest.raises(ValueError, match="no visible key"):
        enc(torch.randn(2, 3, 30), torch.randn(2, 6, 30), key_padding_mask=pad)


# --- MulT ----------------------------------------------------------------------------------------


def _expected_param_count(dims, d=30, layers=5, out_dim=1):
    def encoder(e, n):
        layer = (4 * e * e + 4 * e) + (e * 4 * e + 4 * e) + (4 * e * e + e) + 4 * e
        return n * layer + 2 * e

    f = 6 * d
    return (
        d * sum(dims.values())
        + 6 * encoder(d, layers)
        + 3 * encoder(2 * d, max(layers, 3))
        + 2 * (f * f + f)
        + f * out_dim
        + out_dim
    )


def test_default_mult_parameter_count_is_mult_sized():
    model = MulT()
    n = sum(p.numel() for p in model.parameters())
    assert n == _expected_param_count(DIMS) == 1_071_211


@pytest.mark.parametrize("task,out_dim", [("regression", 1), ("classification", 8)])
@pytest.mark.parametrize("lengths", [(50, 50, 50), (50, 375, 500)])
def test_mult_output_shape_aligned_and_unaligned(task, out_dim, lengths):
    torch.manual_seed(0)
    model = MulT(out_dim=out_dim, task=task).eval()
    with torch.no_grad():
        out = model(**_features(2, lengths))
    assert out.shape == (2, out_dim)
    assert torch.isfinite(out).all()


def test_mult_gradient_reaches_every_parameter():
    torch.manual_seed(0)
    model = MulT(layers=1).train()
    model(**_features(3, (6, 9, 11))).sum().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert dead == []


def test_mult_eval_is_deterministic_and_train_uses_dropout():
    torch.manual_seed(0)
    model = MulT(layers=2)
    x = _features(2, (10, 12, 14))
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(**x), model(**x))
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(**x), model(**x))


def test_mult_errors_name_the_problem():
    model = MulT(layers=1)
    x = _features(2, (5, 5, 5))
    with pytest.raises(ValueError, match=r"audio features must have shape \(B, T, 5\), got \(2, 5, 6\)"):
        model(**{**x, "audio": torch.randn(2, 5, 6)})
    with pytest.raises(KeyError, match="missing input 'vision'"):
        model(text=x["text"], audio=x["audio"])
    with pytest.raises(ValueError, match="same batch size"):
        model(**{**x, "vision": torch.randn(3, 5, 20)})
    with pytest.raises(ValueError, match="at least 2 modalities"):  # any M >= 2 is a MulT now
        MulT(feature_dims={"text": 300})
    with pytest.raises(ValueError, match="divisible"):
        MulT(d_model=32)
    with pytest.raises(KeyError, match="unknown modality"):
        MulT(cross_attn_dropout={"speech": 0.1})
    with pytest.raises(ValueError, match="embed_dropout must lie in"):
        MulT(embed_dropout=1.5)


def test_mult_custom_modality_names_and_memory_depth():
    model = MulT(feature_dims={"l": 8, "a": 4, "v": 6}, layers=2, d_model=10, num_heads=2).eval()
    assert sorted(model.cross) == ["a_from_l", "a_from_v", "l_from_a", "l_from_v", "v_from_a", "v_from_l"]
    assert len(model.cross["l_from_a"].layers) == 2 and len(model.mem["l"].layers) == 3
    assert model(**_features(2, (4, 5, 6), {"l": 8, "a": 4, "v": 6})).shape == (2, 1)
    # MulT's attention-dropout defaults, keyed by the key/value modality
    assert model.cross_attn_dropout == {"l": 0.1, "a": 0.0, "v": 0.0}
    assert model.cross["l_from_a"].layers[0].attn.dropout == 0.0
    assert model.cross["a_from_l"].layers[0].attn.dropout == 0.1


# --- hook spec ----------------------------------------------------------------------------------


def test_hook_spec_validates_and_matches_runtime_shapes():
    torch.manual_seed(0)
    model = MulT(layers=1).eval()
    spec = hook_spec_for(model)
    spec.validate(model)
    assert spec.features == {"text": "text", "audio": "audio", "vision": "vision"}
    assert spec.trainable == ["head"]
    seen = {}

    def grab(name):
        def hook(module, args, output):
            seen[name] = (tuple(args[0].shape), tuple(output.shape))

        return hook

    for m, target in spec.signal.items():
        resolve_module(model, target.path).register_forward_hook(grab(target.path))
    for target in spec.type:
        resolve_module(model, target.path).register_forward_hook(grab(target.path))
    with torch.no_grad():
        model(**_features(2, (7, 9, 11)))
    for m, t in zip(DIMS, (7, 9, 11)):
        assert spec.signal[m].layout == "BDT" and seen[f"proj.{m}"][1] == (2, spec.signal[m].width, t)
        assert seen[f"mem.{m}"][0] == (2, t, 60)  # arg 0 of the memory: (B, T, 2d)
    assert {t.width for t in spec.type} == {60}
    params = set(spec.encoders["audio"].params)
    assert params == {"proj.audio", "cross.audio_from_text", "cross.audio_from_vision", "mem.audio"}


def test_type_prompt_tokens_prepended_and_stripped_keep_the_readout_working():
    """What a prompter does at a type hook: prepend tokens to the memory input, and strip them after
    from a module that returns them (a memory returns only its last step: nothing to strip)."""
    torch.manual_seed(0)
    model = MulT(layers=1).eval()
    x = _features(2, (7, 9, 11))
    with torch.no_grad():
        base = model(**x)
    prompt = torch.randn(4, 60)
    handles = []
    for m in model.modalities:
        mem = model.mem[m]
        handles.append(
            mem.register_forward_pre_hook(
                lambda mod, args: (torch.cat([prompt.expand(args[0].shape[0], -1, -1), args[0]], 1), *args[1:])
            )
        )
        assert mem.returns_prompt_rows is False
        handles.append(mem.register_forward_hook(
            lambda mod, args, out: out[:, prompt.shape[0]:] if mod.returns_prompt_rows else None))
    with torch.no_grad():
        prompted = model(**x)
    for h in handles:
        h.remove()
    assert prompted.shape == base.shape
    assert not torch.allclose(prompted, base)  # the prompt tokens reach the last step


# --- positional embeddings: padding steps and prompt prefixes ----------------------------------

POSITION_MODES = ["all", "skip_padding", "skip_padding_renumber"]


def _padded(b=2, t=7, e=30, seed=0):
    """Random ``(b, t, e)`` with all-zero steps: sample 0 at 0, 1, 4 (leading + inner), sample 1 at the end."""
    x = torch.randn(b, t, e, generator=torch.Generator().manual_seed(seed))
    x[0, [0, 1, 4]] = 0.0
    x[1, -1] = 0.0
    return x


def test_positions_all_reproduces_the_default_bit_for_bit():
    x = _features(2, (6, 9, 11))
    torch.manual_seed(0)
    default = MulT(layers=2).eval()
    torch.manual_seed(0)
    explicit = MulT(layers=2, positions="all").eval()
    with torch.no_grad():
        assert torch.equal(default(**x), explicit(**x))
    enc = explicit.mem["text"]
    seq = _padded(e=60)
    want = torch.add(sinusoidal_table(7, 60), seq, alpha=math.sqrt(60))  # every step: positions 1..T
    assert torch.equal(enc._embed(seq), want)
    assert enc.position_ids(seq).tolist() == [list(range(1, 8))] * 2


def test_skip_padding_gives_zero_steps_no_position_and_real_steps_their_own_index():
    enc = TransformerEncoder(30, 5, layers=1, positions="skip_padding").eval()
    x = _padded()
    emb = enc._embed(x)
    table = sinusoidal_table(7, 30)
    for b, pads in ((0, [0, 1, 4]), (1, [6])):
        for t in range(7):
            if t in pads:  # sqrt(E) * 0 + no position: exactly zero
                assert torch.equal(emb[b, t], torch.zeros(30)), (b, t)
            else:  # position t + 1, as MulT's make_positions (left_pad=False)
                assert torch.equal(emb[b, t], torch.add(table[t], x[b, t], alpha=math.sqrt(30))), (b, t)
    assert enc.position_ids(x).tolist() == [[0, 0, 3, 4, 0, 6, 7], [1, 2, 3, 4, 5, 6, 0]]
    assert torch.equal(emb[1, 0], torch.add(table[0], x[1, 0], alpha=math.sqrt(30)))  # first real step: position 1


def test_skip_padding_renumber_counts_real_steps_from_one():
    enc = TransformerEncoder(30, 5, layers=1, positions="skip_padding_renumber").eval()
    x = _padded()
    assert enc.position_ids(x).tolist() == [[0, 0, 1, 2, 0, 3, 4], [1, 2, 3, 4, 5, 6, 0]]
    emb = enc._embed(x)
    assert torch.equal(emb[0, 2], torch.add(sinusoidal_table(1, 30)[0], x[0, 2], alpha=math.sqrt(30)))
    assert torch.equal(emb[0, 4], torch.zeros(30))


@pytest.mark.parametrize("mode", ["skip_padding", "skip_padding_renumber"])
def test_padding_is_the_whole_step_being_zero_not_its_first_feature(mode):
    enc = TransformerEncoder(30, 5, layers=1, positions=mode)
    x = torch.randn(1, 4, 30)
    x[..., 0] = 0.0  # MulT would take every step for padding here
    x[0, 2] = 0.0
    assert enc.position_ids(x)[0, [0, 1, 3]].tolist() == ([1, 2, 4] if mode == "skip_padding" else [1, 2, 3])
    assert enc.position_ids(x)[0, 2] == 0


@pytest.mark.parametrize("attn_mask", [False, True])
def test_skip_padding_zero_keys_look_the_same_at_any_length(attn_mask):
    """A zero-filled (missing) key modality: with no positions all its steps are identical, so the
    output does not depend on how many there are; with positions 1..T it does."""
    torch.manual_seed(5)
    q = torch.randn(2, 6, 30)
    out = {}
    for mode in ("all", "skip_padding"):
        torch.manual_seed(6)
        enc = TransformerEncoder(30, 5, layers=2, attn_mask=attn_mask, positions=mode).eval()
        with torch.no_grad():
            out[mode] = [enc(q, torch.zeros(2, t, 30)) for t in (5, 17)]
    torch.testing.assert_close(out["skip_padding"][0], out["skip_padding"][1], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out["all"][0], out["all"][1], atol=1e-3)


def test_skip_padding_keys_use_their_own_padding(monkeypatch):
    """Keys are numbered on their own sequence: a zero query step does not move the keys' positions."""
    enc = TransformerEncoder(30, 5, layers=1, positions="skip_padding").eval()
    k = _padded(seed=1)
    q = torch.randn(2, 3, 30)
    q[:, 0] = 0.0
    seen = []
    embed = enc._embed

    def recording(x, prefix_len=0):
        seen.append(enc.position_ids(x, prefix_len))
        return embed(x, prefix_len)

    monkeypatch.setattr(enc, "_embed", recording)
    enc(q, k)
    assert seen[0].tolist() == [[0, 2, 3]] * 2
    assert seen[1].tolist() == [[0, 0, 3, 4, 0, 6, 7], [1, 2, 3, 4, 5, 6, 0]]


def test_mult_positions_reach_every_transformer_and_round_trip_through_config(tmp_path):
    from promptkit.backbone_files import load_backbone, save_backbone

    torch.manual_seed(0)
    model = MulT(layers=1, positions="skip_padding").eval()
    encoders = [*model.cross.values(), *model.mem.values()]
    assert len(encoders) == 9 and {e.position_mode for e in encoders} == {"skip_padding"}
    cfg = model.config()
    assert cfg["positions"] == "skip_padding"
    x = _features(2, (5, 6, 7))
    x["audio"] = torch.zeros_like(x["audio"])
    loaded = load_backbone(save_backbone(model, tmp_path / "m.safetensors", "mult"))
    assert loaded.positions == "skip_padding"
    with torch.no_grad():
        assert torch.equal(loaded(**x), model(**x))
    torch.manual_seed(0)
    model_all = MulT(layers=1).eval()
    with torch.no_grad():
        assert not torch.allclose(model_all(**x), model(**x))  # the option changes the function
    old = dict(model_all.config())
    del old["positions"]  # a config saved before the option existed
    rebuilt = MulT(**old)
    assert rebuilt.positions == "all" and rebuilt.config() == model_all.config()


def test_bad_positions_and_prefix_len_are_clear_errors():
    modes = "'all', 'skip_padding', 'skip_padding_renumber'"
    with pytest.raises(ValueError, match=f"positions must be one of {modes}, got 'none'"):
        MulT(positions="none")
    with pytest.raises(ValueError, match="positions must be one of"):
        TransformerEncoder(30, 5, layers=1, positions="padding")
    enc = TransformerEncoder(30, 5, layers=1)
    x = torch.randn(2, 4, 30)
    for bad in (-1, 5, 1.5, True, "2"):
        with pytest.raises(ValueError, match=r"prefix_len must be an int in \[0, T_q\] = \[0, 4\]"):
            enc(x, prefix_len=bad)
    assert enc(x, prefix_len=4).shape == (2, 4, 30)  # all prompt tokens: allowed


@pytest.mark.parametrize("mode", POSITION_MODES)
def test_prefix_tokens_get_no_position_and_leave_the_real_steps_positions_alone(mode):
    enc = TransformerEncoder(30, 5, layers=1, positions=mode).eval()
    x = _padded()
    tokens = torch.randn(2, 3, 30)
    tokens[0, 1] = 0.0  # a zero prompt token is still a prompt token
    seq = torch.cat([tokens, x], dim=1)
    ids = enc.position_ids(seq, prefix_len=3)
    assert ids[:, :3].eq(0).all() and torch.equal(ids[:, 3:], enc.position_ids(x))
    emb = enc._embed(seq, prefix_len=3)
    assert torch.equal(emb[:, 3:], enc._embed(x))
    assert torch.equal(emb[:, :3], tokens * math.sqrt(30))


def test_prefix_tokens_under_the_future_mask_are_seen_by_every_real_step():
    torch.manual_seed(7)
    enc = TransformerEncoder(30, 5, layers=2, attn_mask=True).eval()
    x, tokens = torch.randn(2, 6, 30), torch.randn(2, 3, 30)
    seq = torch.cat([tokens, x], 1)
    with torch.no_grad():
        out = enc(seq, prefix_len=3)
        # the causal fast path and the explicit future mask agree with a prefix too
        no_pad = torch.zeros(2, 9, dtype=torch.bool)
        torch.testing.assert_close(out, enc(seq, key_padding_mask=no_pad, prefix_len=3), atol=1e-5, rtol=1e-5)
        other = enc(torch.cat([torch.randn(2, 3, 30), x], 1), prefix_len=3)
        later = enc(torch.cat([tokens, torch.randn(2, 6, 30)], 1), prefix_len=3)
    assert (out[:, 3:] - other[:, 3:]).abs().amax(-1).gt(1e-4).all()  # every real step sees the prompts
    torch.testing.assert_close(out[:, :3], later[:, :3])  # the prompts do not see the real steps


# --- any number of modalities ---------------------------------------------------------------------

EXTRA_DIMS = {"text": 12, "audio": 5, "vision": 7, "pose": 6, "physio": 4}


def _dims(m: int) -> dict[str, int]:
    return dict(list(EXTRA_DIMS.items())[:m])


def _expected_param_count_m(dims, d, layers, out_dim=1):
    """:func:`_expected_param_count` for M modalities: M(M-1) crossmodal transformers of width d,
    M memories of width (M-1)d, a head over M(M-1)d features."""

    def encoder(e, n):
        layer = (4 * e * e + 4 * e) + (e * 4 * e + 4 * e) + (4 * e * e + e) + 4 * e
        return n * layer + 2 * e

    m = len(dims)
    f = m * (m - 1) * d
    return (d * sum(dims.values()) + m * (m - 1) * encoder(d, layers) + m * encoder((m - 1) * d, max(layers, 3))
            + 2 * (f * f + f) + f * out_dim + out_dim)


@pytest.mark.parametrize("m", [2, 3, 4, 5])
def test_mult_takes_any_number_of_modalities_with_every_ordered_pair(m):
    torch.manual_seed(0)
    dims = _dims(m)
    model = MulT(feature_dims=dims, d_model=10, num_heads=2, layers=1).eval()
    assert len(model.cross) == m * (m - 1)
    assert sorted(model.cross) == sorted(f"{a}_from_{b}" for a in dims for b in dims if a != b)
    assert model.memory_width == (m - 1) * 10 and model.head.proj1.in_features == m * (m - 1) * 10
    assert model.sources("text") == [f"text_from_{s}" for s in dims if s != "text"]
    assert sum(p.numel() for p in model.parameters()) == _expected_param_count_m(dims, 10, 1)
    with torch.no_grad():
        out = model(**_features(2, tuple(4 + i for i in range(m)), dims))
    assert out.shape == (2, 1) and torch.isfinite(out).all()
    assert _expected_param_count_m(DIMS, 30, 5) == _expected_param_count(DIMS)  # M = 3 is the published model


def test_mult_over_four_modalities_trains_every_parameter_and_has_a_valid_hook_spec():
    torch.manual_seed(0)
    dims = _dims(4)
    model = MulT(feature_dims=dims, d_model=10, num_heads=2, layers=1).train()
    model(**_features(3, (5, 6, 7, 4), dims)).sum().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert dead == []
    spec = hook_spec_for(model)
    spec.validate(model)
    assert {t.width for t in spec.type} == {30} and {e.width for e in spec.encoders.values()} == {30}
    assert set(spec.encoders["pose"].params) == {
        "proj.pose", "cross.pose_from_text", "cross.pose_from_audio", "cross.pose_from_vision", "mem.pose"}
    seen = {}
    for target in spec.type:
        resolve_module(model, target.path).register_forward_hook(
            lambda mod, args, out, p=target.path: seen.__setitem__(p, tuple(args[0].shape)))
    with torch.no_grad():
        model.eval()(**_features(2, (5, 6, 7, 4), dims))
    assert seen == {"mem.text": (2, 5, 30), "mem.audio": (2, 6, 30), "mem.vision": (2, 7, 30), "mem.pose": (2, 4, 30)}


def test_default_three_modality_mult_initialises_bit_for_bit_as_before():
    # sha256 over the state dict (names and bytes) of this seeded model, computed before MulT took
    # any number of modalities: parameter names, shapes and initialisation order are unchanged
    import hashlib

    torch.manual_seed(0)
    model = MulT(d_model=10, num_heads=2, layers=2)
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.numpy().tobytes())
    assert h.hexdigest() == "fcabaf0a242570e0ae65098b24c669e2e84f2ba491b487376ed937ca1bca537f"


def test_shipped_checkpoint_loads_and_gives_the_outputs_it_gave_before():
    # the shipped M = 3 backbone loads strictly (same names and shapes) and its eval outputs on
    # seeded inputs are the ones measured before MulT took any number of modalities
    import warnings
    from pathlib import Path

    from promptkit.backbone_files import load_backbone

    path = Path(__file__).resolve().parent.parent / "recipes" / "pretrained" / "mult-synth-data0.safetensors"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an older checkpoint format version is warned about, not refused
        model = load_backbone(path)
    assert model.modalities == ("text", "audio", "vision") and len(model.cross) == 6
    g = torch.Generator().manual_seed(0)
    feats = {m: torch.randn(8, 20, d, generator=g) for m, d in model.feature_dims.items()}
    with torch.no_grad():
        out = model(**feats).flatten()
    before = [-1.4700011014938354, -1.0634074211120605, 2.132111072540283, -2.0342514514923096,
              -1.3319571018218994, -0.17407268285751343, -0.9269333481788635, -0.48140162229537964]
    assert out.tolist() == pytest.approx(before, abs=1e-5)
