"""MPMM's attention-level variant (``mpmm_attn``): per-case key/value prefixes on every attention module.

Tiny synthetic data (24/12/12 samples), a one-layer MulT of width 8, prompt length 3 and one epoch;
ToyMSA (``nn.TransformerEncoderLayer``) and a time-first ``nn.MultiheadAttention`` toy for torch's
attention class."""

from __future__ import annotations

import pytest
import torch
from _helpers import BASELINE_SEQ, fresh_backbone_file, tiny_baseline_recipe
from _toy import ToyMSA, toy_inputs, toy_spec
from torch import nn

from promptkit.adapter_files import WEIGHTS_NAME
from promptkit.backbone_files import build_backbone, load_backbone
from promptkit.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from promptkit.evaluation import evaluate_protocol, zero_filled_forward
from promptkit.methods import get_method, list_methods
from promptkit.methods.mpmm_attention import (
    AttentionPrefixPrompts,
    attention_prompt_parameters,
    attention_widths,
    load_attention_prompts,
)
from promptkit.modalities import ModalitySet
from promptkit.recipes import load_recipe_data

L = 3
SEQ = BASELINE_SEQ


@pytest.fixture(scope="module")
def recipe():
    return tiny_baseline_recipe(prompt_lr=1e-2, prompter={"prompt_length": L})


@pytest.fixture(scope="module")
def data(recipe):
    return load_recipe_data(recipe)


@pytest.fixture(scope="module")
def backbone_file(recipe, data, tmp_path_factory):
    return fresh_backbone_file(recipe, data, tmp_path_factory.mktemp("pretrained"))


@pytest.fixture(scope="module")
def trained(recipe, data, backbone_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("mpmm_attn")
    return get_method("mpmm_attn")(recipe, data, backbone_file, out, progress=False, device="cpu"), out


def _every_case_batch(data, ms):
    ids = torch.arange(12) % len(ms.cases)  # every case, some twice (the test split has 12 samples)
    feats = {m: x[: len(ids)] for m, x in data.splits["test"].features.items()}
    return feats, ms.masks_from_case_ids(ids), ids


def _mult(recipe, data, backbone_file):
    backbone = load_backbone(backbone_file, device="cpu", recipe=recipe)
    return backbone, AttentionPrefixPrompts(backbone, length=L, init_std=0.1).eval()


def test_registered():
    assert "mpmm_attn" in list_methods()


def test_each_sample_gets_the_prefix_set_of_its_case(recipe, data, backbone_file):
    _, model = _mult(recipe, data, backbone_file)
    feats, mask, ids = _every_case_batch(data, model.modality_set)
    with torch.no_grad():
        before = model(feats, mask)
        for p in model.prompt_tensors():
            p[2] = 5.0  # case 2's sets only
        after = model(feats, mask)
    changed = (before - after).abs().amax(-1) > 1e-6
    assert torch.equal(changed, ids == 2)


@pytest.mark.parametrize("toy", ["mult", "torch"])
def test_a_step_changes_only_the_prefixes_and_the_head(toy, recipe, data, backbone_file):
    if toy == "mult":
        backbone, model = _mult(recipe, data, backbone_file)
        feats, mask, _ = _every_case_batch(data, model.modality_set)
    else:
        dims = {"a": 3, "b": 4}
        backbone = ToyMSA(dims)
        model = AttentionPrefixPrompts(backbone, toy_spec(list(dims)), length=L)
        feats, mask = toy_inputs(dims), ModalitySet(list(dims)).sample_masks(6, 0.7, torch.Generator().manual_seed(0))
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    prompts = [p.clone() for p in model.prompt_tensors()]
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model(feats, mask).pow(2).mean().backward()
    opt.step()
    after = backbone.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("head.") for k in changed)
    assert all(not torch.equal(a, b) for a, b in zip(prompts, model.prompt_tensors()))


def test_parameter_count_is_the_formula_and_grows_as_two_to_the_m_minus_one(recipe, data, backbone_file):
    _, model = _mult(recipe, data, backbone_file)
    dims = model.embed_dims()
    assert len(dims) == 6 + 9  # six crossmodal layers (d 8), three memories of three layers (2d = 16)
    assert sorted(set(dims)) == [8, 16] and attention_widths(model.backbone) == dims
    assert model.prompt_parameters() == attention_prompt_parameters(3, L, dims) == 7 * 2 * L * (6 * 8 + 9 * 16)
    for m in (2, 3, 4):
        toy_dims = {f"m{i}": 3 + i for i in range(m)}
        toy = AttentionPrefixPrompts(ToyMSA(toy_dims), toy_spec(list(toy_dims)), length=L)
        assert toy.embed_dims() == [8] * m  # one self-attention per modality's encoder
        assert toy.prompt_parameters() == attention_prompt_parameters(m, L, [8] * m) == (2**m - 1) * 2 * L * 8 * m
        assert all(p.shape[0] == 2**m - 1 for p in toy.prompt_tensors())


def test_prefixes_reach_attention(recipe, data, backbone_file):
    backbone, model = _mult(recipe, data, backbone_file)
    feats, mask, _ = _every_case_batch(data, model.modality_set)
    with torch.no_grad():
        bare = zero_filled_forward(load_backbone(backbone_file, device="cpu", recipe=recipe), data.modalities)(feats, mask)
        prompted = model(feats, mask)
    assert prompted.shape == bare.shape
    assert (prompted - bare).abs().amax(-1).min() > 1e-6  # every sample moved
    # torch's nn.TransformerEncoderLayer in eval under no_grad, where its fused path may skip self_attn.forward
    dims = {"a": 3, "b": 4}
    toy = ToyMSA(dims).eval()
    feats, mask = toy_inputs(dims), torch.ones(6, 2, dtype=torch.bool)
    with torch.no_grad():
        bare = toy(**feats)
        prompted = AttentionPrefixPrompts(toy, toy_spec(list(dims)), length=L, init_std=1.0)(feats, mask)
    assert prompted.shape == bare.shape and (prompted - bare).abs().amax(-1).min() > 1e-6


class _TimeFirst(nn.Module):
    """One time-first ``nn.MultiheadAttention`` from ``a`` to ``b`` and a linear head."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.feature_dims = {"a": width, "b": width}
        self.attn = nn.MultiheadAttention(width, 2)  # batch_first=False: (T, B, E)
        self.head = nn.Linear(width, 1)

    def forward(self, a, b):
        out, _ = self.attn(a.transpose(0, 1), b.transpose(0, 1), b.transpose(0, 1))
        return self.head(out.mean(0))


TIME_FIRST_SPEC = {"features": {"a": "a", "b": "b"}, "trainable": ["head"]}


def _prefix(p, ids, time_first=False):
    x = p[ids]  # (B, L, E)
    return x.transpose(0, 1) if time_first else x


def test_the_hook_is_exactly_attention_over_the_prefixed_keys_values_and_masks(recipe, data, backbone_file):
    """Layouts and masks: the hooked call equals the bare module's forward (hooks bypassed) on keys and
    values with the case's prefix in front and the masks grown by unblocked prefix columns."""
    g = torch.Generator().manual_seed(1)
    ids = torch.tensor([0, 2, 1, 2])
    free = torch.zeros(4, L, dtype=torch.bool)
    # the project's MultiheadAttention (MulT): cross-attention with a key padding mask, self-attention causal
    _, model = _mult(recipe, data, backbone_file)
    cross = dict(model.backbone.named_modules())[model.attention_names[0]]
    self_attn = dict(model.backbone.named_modules())[model.attention_names[-1]]
    q, k = torch.randn(4, 5, 8, generator=g), torch.randn(4, 6, 8, generator=g)
    kpm = torch.zeros(4, 6, dtype=torch.bool)
    kpm[1, :2] = True
    pk, pv = _prefix(model.key_prompts[0], ids), _prefix(model.value_prompts[0], ids)
    x = torch.randn(4, 5, 16, generator=g)
    sk, sv = _prefix(model.key_prompts[-1], ids), _prefix(model.value_prompts[-1], ids)
    causal = torch.ones(5, 5, dtype=torch.bool).triu(1)
    model._case_ids = ids
    with torch.no_grad():
        assert torch.allclose(cross(q, k, key_padding_mask=kpm),
                              cross.forward(q, torch.cat([pk, k], 1), torch.cat([pv, k], 1),
                                            key_padding_mask=torch.cat([free, kpm], 1)), atol=1e-6)
        assert torch.allclose(self_attn(x, is_causal=True),
                              self_attn.forward(x, torch.cat([sk, x], 1), torch.cat([sv, x], 1),
                                                attn_mask=torch.cat([torch.zeros(5, L, dtype=torch.bool), causal], 1)),
                              atol=1e-6)
    # torch's nn.MultiheadAttention, time first, key padding and attention masks
    toy = AttentionPrefixPrompts(_TimeFirst(), TIME_FIRST_SPEC, length=L, init_std=1.0).eval()
    attn = toy.backbone.attn
    q, k, v = (torch.randn(t, 4, 8, generator=g) for t in (5, 6, 6))
    am = torch.zeros(5, 6, dtype=torch.bool)
    am[0, 3:] = True
    pk, pv = _prefix(toy.key_prompts[0], ids, True), _prefix(toy.value_prompts[0], ids, True)
    toy._case_ids = ids
    with torch.no_grad():
        got, _ = attn(q, k, v, key_padding_mask=kpm, attn_mask=am)
        want, _ = attn.forward(q, torch.cat([pk, k], 0), torch.cat([pv, v], 0), key_padding_mask=torch.cat([free, kpm], 1),
                               attn_mask=torch.cat([torch.zeros(5, L, dtype=torch.bool), am], 1))
        assert got.shape == (5, 4, 8) and torch.allclose(got, want, atol=1e-6)
        plain, _ = attn.forward(q, k, v, key_padding_mask=kpm, attn_mask=am)
        assert not torch.allclose(got, plain, atol=1e-3)
    toy._case_ids = None
    with pytest.raises(RuntimeError, match="outside AttentionPrefixPrompts.forward"):
        attn(q, k, v)


def test_method_trains_only_prefixes_and_head_and_runs_through_the_protocol(trained, recipe, data, backbone_file):
    done, out = trained
    model = done.modules["model"]
    assert done.name == "mpmm_attn" and done.info["prompt_sets"] == 7
    head = sum(p.numel() for p in model.backbone.head.parameters())
    assert done.trainable_params == attention_prompt_parameters(3, L, model.embed_dims()) + head
    assert done.trainable_params == sum(p.numel() for p in model.parameters() if p.requires_grad)
    # the frozen weights bit-identical to the file's, the head and the prompts trained
    original = load_backbone(backbone_file, device="cpu", recipe=recipe).state_dict()
    now = model.backbone.state_dict()
    changed = {k for k in original if not torch.equal(original[k], now[k])}
    assert changed and all(k.startswith("head.") for k in changed)
    res = evaluate_protocol(done.forward, data.splits["test"], "mosi", rates=(0.5,))
    assert len(res.case_names) == 6 and all(v == v for c in res.cases.values() for v in c.values())


def test_save_load_round_trip_reproduces_predictions(trained, recipe, data, backbone_file, tmp_path):
    done, out = trained
    model = done.modules["model"]
    feats, mask, _ = _every_case_batch(data, model.modality_set)
    fresh = load_backbone(backbone_file, device="cpu", recipe=recipe)
    again = load_attention_prompts(fresh, out / "mpmm_attn_adapter").eval()
    with torch.no_grad():
        assert torch.equal(again(feats, mask), model(feats, mask))
    path = model.save_pretrained(tmp_path / "adapter")
    again.remove()
    other = build_backbone(recipe, data)  # same layout, other (fresh) weights
    with torch.no_grad():
        next(p for n, p in other.named_parameters() if not n.startswith("head.")).add_(1.0)
    with pytest.raises(CheckpointError, match="other pre-trained weights"):
        AttentionPrefixPrompts.from_pretrained(other, path)


def test_a_single_file_adapter_of_older_promptkit_still_loads(trained, recipe, data, backbone_file, tmp_path):
    """Older promptkit wrote one ``mpmm_attn_adapter.safetensors`` whose meta is the config: it loads,
    as the file or the folder holding it, through the same checks."""
    done, out = trained
    model = done.modules["model"]
    feats, mask, _ = _every_case_batch(data, model.modality_set)
    tensors, meta = load_checkpoint(out / "mpmm_attn_adapter" / WEIGHTS_NAME, kind="mpmm-attn-adapter")
    old_meta = {"method": "mpmm_attn", **{k: v for k, v in meta["config"].items()
                                          if k not in ("format", "adapter_type", "promptkit_version")}}
    legacy = save_checkpoint(tmp_path / "mpmm_attn_adapter.safetensors", tensors, old_meta, kind="mpmm-attn-adapter")
    for where in (legacy, tmp_path):
        again = load_attention_prompts(load_backbone(backbone_file, device="cpu", recipe=recipe), where).eval()
        with torch.no_grad():
            assert torch.equal(again(feats, mask), model(feats, mask))
        again.remove()
    other = build_backbone(recipe, data)  # same layout, other weights
    with torch.no_grad():
        next(p for n, p in other.named_parameters() if not n.startswith("head.")).add_(1.0)
    with pytest.raises(CheckpointError, match=r"mpmm_attn_adapter\.safetensors was trained on other pre-trained"):
        load_attention_prompts(other, legacy)


def test_a_backbone_without_attention_is_refused():
    class NoAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.Linear(3, 4)
            self.head = nn.Linear(4, 1)

        def forward(self, a, b):
            return self.head(self.enc(a).mean(1) + self.enc(b).mean(1))

    with pytest.raises(ValueError, match=r"NoAttention.*mpmm_attn needs attention layers.*\"mpmm\""):
        AttentionPrefixPrompts(NoAttention(), {"features": {"a": "a", "b": "b"}, "trainable": ["head"]})
    # attention inside the head alone does not count
    only_head = _TimeFirst()
    with pytest.raises(ValueError, match="mpmm_attn needs attention layers"):
        AttentionPrefixPrompts(only_head, {"features": {"a": "a", "b": "b"}, "trainable": ["head", "attn"]})
