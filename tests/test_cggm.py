"""CGGM plug-in: detached classifiers, ρ·B gradient modulation, guard and bound, L_gm, checkpoints."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F
from _helpers import tiny_recipe_dict, tiny_recipe_toml, write_recipe
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from promptkit.cggm import (
    CGGM,
    CGGMConfig,
    direction_loss,
    modulation_coefficients,
    read_out,
    unimodal_stats,
)
from promptkit.hookspec import HookSpec

MODS = ("text", "audio", "vision")
DIMS = {"text": 5, "audio": 3, "vision": 4}


class Toy(nn.Module):
    """Three per-modality Linear encoders → concat of their last step / vector → two-layer head."""

    def __init__(self, out_dim: int = 1, task: str = "regression") -> None:
        super().__init__()
        self.task, self.out_dim = task, out_dim
        self.enc = nn.ModuleDict({m: nn.Linear(d, 8) for m, d in DIMS.items()})
        self.head = nn.Sequential(nn.Linear(24, 16), nn.ReLU(), nn.Linear(16, out_dim))

    def forward(self, text, audio, vision):
        t = self.enc["text"](text)[:, -1]  # (B, T, 8) read at its last step
        a = self.enc["audio"](audio)[:, -1]
        v = self.enc["vision"](vision.mean(1))  # (B, 8) vector
        return self.head(torch.cat([t, a, v], -1))


def toy_spec(encoders: bool = True) -> HookSpec:
    enc = {
        "text": {"output": "enc.text", "layout": "BTD"},
        "audio": {"output": "enc.audio", "layout": "BTD"},
        "vision": "enc.vision",
    }
    return HookSpec(features={m: m for m in MODS}, trainable=["head"], encoders=enc if encoders else {})


def make_batch(seed: int, task: str = "regression", n: int = 16, out_dim: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    batch = {m: torch.randn(n, 6, d, generator=g) for m, d in DIMS.items()}
    if task == "regression":
        labels = torch.randn(n, generator=g).round()  # some exact zeros
    elif out_dim == 8:
        labels = torch.randint(0, 2, (n, 4), generator=g)  # IEMOCAP: four binary tasks
    else:
        labels = torch.randint(0, out_dim, (n,), generator=g)
    batch["labels"] = labels
    batch["mask"] = torch.ones(n, 3, dtype=torch.bool)
    return batch


def task_loss(preds, labels, task):
    if task == "regression":
        return F.l1_loss(preds.squeeze(-1), labels)
    if labels.dim() == 2:
        return F.cross_entropy(preds.reshape(-1, 2), labels.reshape(-1))
    return F.cross_entropy(preds, labels)


def train_step(model, opt, batch, task="regression", plugin=None, clip=0.8):
    """One engine-like step: forward, loss (+ extra), backward, after_backward, clip, step."""
    opt.zero_grad()
    preds = model(**{m: batch[m] for m in MODS})
    loss = task_loss(preds, batch["labels"], task)
    if plugin is not None:
        extra = plugin.extra_loss(model, batch, preds, batch["labels"])
        if extra is not None:
            loss = loss + extra
    loss.backward()
    if plugin is not None:
        plugin.after_backward(model)
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pair():
    a = Toy()
    return a, copy.deepcopy(a)


# --- classifiers are detached --------------------------------------------------------------
@pytest.mark.parametrize("lam", [0.0, 0.2])
def test_classifier_training_puts_no_gradient_into_the_backbone(lam):
    model, plain = pair()
    cggm = CGGM(model, toy_spec(), CGGMConfig(lam=lam))
    before = [p.detach().clone() for p in cggm.classifiers.parameters()]
    batch = make_batch(1)
    preds = model(**{m: batch[m] for m in MODS})
    assert all(not r.requires_grad for r in cggm._captured.values())
    loss = task_loss(preds, batch["labels"], "regression")
    extra = cggm.extra_loss(model, batch, preds, batch["labels"])
    (loss if extra is None else loss + extra).backward()
    task_loss(plain(**{m: batch[m] for m in MODS}), batch["labels"], "regression").backward()

    for (name, p), q in zip(model.named_parameters(), plain.parameters()):
        if lam > 0 and name == "head.2.weight":  # L_gm reaches only the head's output weight
            assert not torch.equal(p.grad, q.grad)
        else:
            assert torch.equal(p.grad, q.grad), name
    after = list(cggm.classifiers.parameters())
    assert any(not torch.equal(b, p) for b, p in zip(before, after)), "classifiers did not train"


def test_classifier_init_depends_on_the_config_seed_only():
    model = Toy()
    torch.manual_seed(1)
    a = CGGM(model, toy_spec())
    torch.manual_seed(2)
    b = CGGM(model, toy_spec())
    c = CGGM(model, toy_spec(), CGGMConfig(seed=1))
    assert all(torch.equal(p, q) for p, q in zip(a.classifiers.parameters(), b.classifiers.parameters()))
    assert not torch.equal(a.classifiers["text"][0].weight, c.classifiers["text"][0].weight)


def test_construction_leaves_the_global_rng_untouched():
    torch.manual_seed(3)
    expected = torch.rand(4)
    model = Toy()
    torch.manual_seed(3)
    CGGM(model, toy_spec())
    assert torch.equal(torch.rand(4), expected)


# --- modulation -------------------------------------------------------------------------------
def test_modality_gradients_are_exactly_rho_times_B_times_the_unmodulated_ones():
    model = Toy()
    extra = nn.Parameter(torch.ones(3))  # e.g. a text prompt; its grad is set by hand below
    cggm = CGGM(model, toy_spec(), CGGMConfig(rho=1.3, lam=0.2), extra_params={"text": [extra]})
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    seen_unguarded = False
    for step in range(4):
        batch = make_batch(10 + step)
        opt.zero_grad()
        preds = model(**{m: batch[m] for m in MODS})
        loss = task_loss(preds, batch["labels"], "regression") + cggm.extra_loss(model, batch, preds, batch["labels"])
        loss.backward()
        extra.grad = torch.full((3,), 0.5)
        raw = {n: p.grad.clone() for n, p in model.named_parameters()}
        raw_extra = extra.grad.clone()
        cggm.after_backward(model)
        B = {m: cggm.history.B[m][-1] for m in MODS}
        for n, p in model.named_parameters():
            m = n.split(".")[1] if n.startswith("enc.") else None
            want = raw[n] * (1.3 * B[m]) if m else raw[n]
            assert torch.equal(p.grad, want), n
        assert torch.equal(extra.grad, raw_extra * (1.3 * B["text"]))
        seen_unguarded |= not cggm.history.guarded[-1] and len(set(B.values())) > 1
        opt.step()
    assert seen_unguarded, "no step exercised a non-uniform B"


def test_rho_one_and_the_guarded_first_step_reproduce_plain_training_bit_for_bit():
    model, plain = pair()
    cggm = CGGM(model, toy_spec(), CGGMConfig(rho=1.0, lam=0.0))
    opt_a = torch.optim.Adam(model.parameters(), lr=1e-2)
    opt_b = torch.optim.Adam(plain.parameters(), lr=1e-2)
    batch = make_batch(2)
    train_step(model, opt_a, batch, plugin=cggm)
    train_step(plain, opt_b, batch)
    assert cggm.history.guarded == [True] and cggm.history.S == [0.0]
    assert [cggm.history.B[m][0] for m in MODS] == [1.0, 1.0, 1.0]
    for p, q in zip(model.parameters(), plain.parameters()):
        assert torch.equal(p, q)


def test_warmup_steps_keep_B_at_one():
    model = Toy()
    cggm = CGGM(model, toy_spec(), CGGMConfig(warmup_steps=3))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for s in range(3):
        train_step(model, opt, make_batch(20 + s), plugin=cggm)
    assert cggm.history.guarded == [True] * 3
    assert all(b == 1.0 for m in MODS for b in cggm.history.B[m])
    assert not any(math.isnan(a) for m in MODS for a in cggm.history.acc[m])


# --- guard and bound ----------------------------------------------------------------------------
def test_guard_gives_finite_unit_coefficients_when_S_is_about_zero():
    assert modulation_coefficients([0.125, -0.0625, -0.0625], eps=1e-6, b_max=2.0) == ([1.0, 1.0, 1.0], True)
    b, guarded = modulation_coefficients([0.1, 0.1, -0.2 + 1e-9], eps=1e-6, b_max=2.0)
    assert guarded and b == [1.0, 1.0, 1.0]
    # the released code's S + 1e-8 would give (1e-8 - 0.125) / 1e-8 ≈ -1.25e7 here


def test_plugin_falls_back_to_B_one_when_no_accuracy_moves():
    model = Toy()
    cggm = CGGM(model, toy_spec(), CGGMConfig(classifier_lr=1e-12))  # classifiers effectively frozen
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    batch = make_batch(7)
    for _ in range(3):
        train_step(model, opt, batch, plugin=cggm)
    assert cggm.history.guarded == [True, True, True] and cggm.history.S == [0.0, 0.0, 0.0]
    assert all(cggm.history.B[m] == [1.0, 1.0, 1.0] for m in MODS)


def test_coefficients_follow_the_formula_and_are_clipped_to_zero_and_b_max():
    b, guarded = modulation_coefficients([0.2, 0.1, 0.1], eps=1e-6, b_max=2.0)
    assert not guarded and b == pytest.approx([0.5, 0.75, 0.75])
    b, _ = modulation_coefficients([0.3, 0.1, -0.35], eps=1e-6, b_max=2.0)  # raw: -5, -1, 8
    assert b == [0.0, 0.0, 2.0]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-1, 1, allow_nan=False), min_size=2, max_size=5), st.floats(1, 5))
def test_coefficients_are_always_finite_and_bounded(deltas, b_max):
    b, guarded = modulation_coefficients(deltas, eps=1e-6, b_max=b_max)
    assert all(math.isfinite(x) and 0.0 <= x <= b_max for x in b)
    s = sum(deltas)
    raw = [(s - d) / s for d in deltas] if not guarded else None
    if raw is not None and all(0 <= r <= b_max for r in raw):
        assert sum(b) == pytest.approx(len(deltas) - 1)  # Σ B = M − 1 when nothing is clipped


def test_direction_loss_matches_the_formula_and_is_zero_when_aligned():
    cos = torch.tensor([1.0, 0.5, -1.0])
    assert direction_loss([1.0, 2.0, 0.5], cos).item() == pytest.approx((3.5 - (1.0 + 1.0 - 0.5)) / 3)
    assert direction_loss([0.3, 0.7], torch.ones(2)).item() == 0.0


def test_direction_term_pulls_the_head_weight_towards_the_classifiers():
    model = Toy()
    cggm = CGGM(model, toy_spec(), CGGMConfig(lam=1.0))
    batch = make_batch(4)
    preds = model(**{m: batch[m] for m in MODS})
    l_gm = cggm.extra_loss(model, batch, preds, batch["labels"])  # first step: B = 1
    cos = cggm.cosines().detach()
    assert l_gm.item() == pytest.approx(direction_loss([1.0] * 3, cos).item(), rel=1e-5)
    classifier_grads = [p.grad.clone() for p in cggm.classifiers.parameters()]
    l_gm.backward()
    assert all(torch.equal(g, p.grad) for g, p in zip(classifier_grads, cggm.classifiers.parameters()))
    assert model.enc["text"].weight.grad is None  # L_gm reaches the head's output weight only
    with torch.no_grad():
        model.head[2].weight.sub_(0.1 * model.head[2].weight.grad)
    assert cggm.cosines().sum() > cos.sum()


# --- errors -------------------------------------------------------------------------------------
def test_spec_without_encoders_is_a_clear_error():
    msg = "backbone Toy's hook spec names no per-modality encoders; CGGM needs HookSpec.encoders"
    with pytest.raises(ValueError, match=msg):
        CGGM(Toy(), toy_spec(encoders=False))


def test_spec_missing_one_encoder_names_the_modality():
    spec = toy_spec()
    del spec.encoders["audio"]
    with pytest.raises(ValueError, match=r"no encoder for modality \['audio'\]"):
        CGGM(Toy(), spec)


def test_recipe_section_rejects_unknown_keys_and_lists_allowed_ones():
    with pytest.raises(KeyError, match=r"unknown CGGM key\(s\) \['rhoo'\]; allowed keys: \['rho', 'lam'"):
        CGGM.from_recipe_section(Toy(), toy_spec(), {"rhoo": 1.3})
    cggm = CGGM.from_recipe_section(Toy(), toy_spec(), {"rho": 1, "lam": 0, "b_max": 3})
    assert cggm.config.rho == 1 and cggm.config.b_max == 3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"rho": 0}, "rho must be a number > 0"),
        ({"lam": -0.1}, "lam must be a number ≥ 0"),
        ({"b_max": 0.5}, "b_max must be ≥ 1"),
        ({"task": "ranking"}, "task must be"),
        ({"warmup_steps": -1}, "warmup_steps"),
        ({"classifier_hidden": 0}, "classifier_hidden"),
    ],
)
def test_config_validation_names_the_bad_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CGGMConfig(**kwargs)


def test_classifier_width_must_match_the_head_for_the_direction_term():
    with pytest.raises(ValueError, match="classifier_hidden=40 but head 'head.2' takes 16 features"):
        CGGM(Toy(), toy_spec(), CGGMConfig(classifier_hidden=40))
    cggm = CGGM(Toy(), toy_spec(), CGGMConfig(classifier_hidden=40, lam=0.0))
    assert cggm.classifiers["text"][0].out_features == 40


def test_head_option_and_wrong_head_type():
    cggm = CGGM(Toy(), toy_spec(), CGGMConfig(head="head.2"))
    assert cggm.head_path == "head.2" and cggm.out_dim == 1
    with pytest.raises(TypeError, match="must be an nn.Linear, got ReLU"):
        CGGM(Toy(), toy_spec(), CGGMConfig(head="head.1"))


class ScaledToy(Toy):
    """Toy whose prediction is scaled by a bare parameter ``out_scale`` (trainable by its name)."""

    def __init__(self) -> None:
        super().__init__()
        self.out_scale = nn.Parameter(torch.ones(1))

    def forward(self, text, audio, vision):
        return super().forward(text, audio, vision) * self.out_scale


class BareHeadToy(Toy):
    """Toy with an LMF-style head of bare parameters ``fusion_weights`` / ``fusion_bias``, no nn.Linear."""

    def __init__(self) -> None:
        super().__init__()
        del self.head
        self.fusion_weights = nn.Parameter(torch.randn(24, 1) * 0.1)
        self.fusion_bias = nn.Parameter(torch.zeros(1))
        self.head = lambda h: h @ self.fusion_weights + self.fusion_bias


def test_trainable_parameter_names_are_refused_without_head_naming_the_entries():
    """Before: "hook path 'out_scale' does not exist in ScaledToy" although the spec is valid
    (trainable names parameters as well as modules)."""
    spec = HookSpec(features={m: m for m in MODS}, trainable=["head", "out_scale"], encoders=toy_spec().encoders)
    with pytest.raises(ValueError, match=r"trainable entries \['out_scale'\] are parameters.*last nn.Linear in the "
                                         r"others is 'head.2'.*\[cggm\] head"):
        CGGM(ScaledToy(), spec)
    bare = HookSpec(features={m: m for m in MODS}, trainable=["fusion_weights", "fusion_bias"],
                    encoders=toy_spec().encoders)
    with pytest.raises(ValueError, match=r"entries \['fusion_weights', 'fusion_bias'\] are parameters.*the others "
                                         r"hold no nn.Linear"):
        CGGM(BareHeadToy(), bare)
    with pytest.raises(TypeError, match=r"CGGM head 'fusion_weights' is a parameter of BareHeadToy"):
        CGGM(BareHeadToy(), bare, CGGMConfig(head="fusion_weights"))


def test_trainable_parameter_names_with_head_train_the_parameter_and_modulate():
    """With ``head`` set, a spec whose trainable names a parameter trains under CGGM: B is applied,
    L_gm flows into the head's weight and the bare parameter learns."""
    model = ScaledToy()
    spec = HookSpec(features={m: m for m in MODS}, trainable=["head", "out_scale"], encoders=toy_spec().encoders)
    cggm = CGGM(model, spec, CGGMConfig(head="head.2"))
    assert cggm.head is model.head[2] and cggm.out_dim == 1
    cggm.setup(model, list(model.parameters()), None)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for s in range(3):
        train_step(model, opt, make_batch(40 + s), plugin=cggm)
    assert all(len(cggm.history.B[m]) == 3 for m in MODS)
    assert not torch.equal(model.out_scale.detach(), torch.ones(1))


def test_parameter_shared_by_two_modalities_and_unknown_extra_modality_are_errors():
    spec = toy_spec()
    spec.encoders["audio"].params = ["enc.audio", "enc.text"]
    with pytest.raises(ValueError, match="belongs to both 'text' and 'audio'"):
        CGGM(Toy(), spec)
    with pytest.raises(KeyError, match=r"extra_params names modality \['smell'\]"):
        CGGM(Toy(), toy_spec(), extra_params={"smell": [nn.Parameter(torch.ones(1))]})


def test_after_backward_without_extra_loss_and_eval_mode():
    model = Toy()
    cggm = CGGM(model, toy_spec())
    with pytest.raises(RuntimeError, match="without extra_loss"):
        cggm.after_backward(model)
    model.eval()
    batch = make_batch(5)
    preds = model(**{m: batch[m] for m in MODS})
    assert cggm._captured == {}
    assert cggm.extra_loss(model, batch, preds, batch["labels"]) is None


def test_wrong_encoder_layout_is_reported_at_capture():
    spec = toy_spec()
    spec.encoders["text"].layout = "BD"
    model = Toy()
    CGGM(model, spec)
    batch = make_batch(6)
    with pytest.raises(ValueError, match=r"encoder output 'enc.text' has shape \(16, 6, 8\); layout 'BD'"):
        model(**{m: batch[m] for m in MODS})


# --- tasks, masks, metrics ----------------------------------------------------------------------
@pytest.mark.parametrize("task, out_dim", [("regression", 1), ("classification", 3), ("classification", 8)])
def test_regression_and_classification_train_and_report(task, out_dim):
    model = Toy(out_dim=out_dim, task=task)
    cggm = CGGM(model, toy_spec())
    cggm.setup(model, list(model.parameters()), None)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for s in range(4):
        train_step(model, opt, make_batch(30 + s, task, out_dim=out_dim), task=task, plugin=cggm)
    assert all(len(cggm.history.B[m]) == 4 for m in MODS)
    assert all(math.isfinite(b) for m in MODS for b in cggm.history.B[m])
    logs = cggm.on_epoch_end(0)
    assert set(logs) == {f"{k}_{m}" for k in ("B", "acc") for m in MODS} | {"guarded_steps"}
    assert all(0.0 <= logs[f"acc_{m}"] <= 1.0 for m in MODS)
    assert all(0.0 <= logs[f"B_{m}"] <= cggm.config.b_max for m in MODS)
    assert logs["guarded_steps"] >= 1  # the first step has no previous accuracy
    assert math.isnan(cggm.on_epoch_end(1)["B_text"])  # the epoch's record was reset


def test_unimodal_stats_regression_scores_sign_on_non_zero_labels_only():
    logits = torch.tensor([[1.0], [-1.0], [2.0], [0.5]])
    labels = torch.tensor([2.0, 0.0, -1.0, 1.0])
    loss, hits, counted = unimodal_stats(logits, labels, "regression")
    assert (hits.item(), counted.item()) == (2.0, 3.0)
    assert loss.item() == pytest.approx((1 + 1 + 3 + 0.5) / 4)
    _, hits, counted = unimodal_stats(logits, labels, "regression", keep=torch.tensor([True, True, False, False]))
    assert (hits.item(), counted.item()) == (1.0, 1.0)
    assert unimodal_stats(logits, labels, "regression", keep=torch.zeros(4, dtype=torch.bool))[0] is None


def test_unimodal_stats_four_binary_tasks():
    logits = torch.tensor([[3.0, 0.0, 0.0, 3.0, 3.0, 0.0, 0.0, 3.0]])  # predicts 0, 1, 0, 1
    labels = torch.tensor([[0, 1, 1, 1]])
    _, hits, counted = unimodal_stats(logits, labels, "classification")
    assert (hits.item(), counted.item()) == (3.0, 4.0)
    with pytest.raises(TypeError, match="integer class ids"):
        unimodal_stats(logits, labels.float(), "classification")
    with pytest.raises(ValueError, match=r"3 label\(s\) per sample need logits"):
        unimodal_stats(logits, labels[:, :3], "classification")


def test_read_out_layouts():
    x = torch.arange(24.0).reshape(2, 3, 4)
    assert torch.equal(read_out(x, "BTD"), x[:, -1])
    assert torch.equal(read_out(x, "BDT"), x[:, :, -1])
    assert torch.equal(read_out((x, None), "TBD"), x[-1])


def test_absent_modality_is_not_scored_and_keeps_delta_zero():
    model = Toy()
    cggm = CGGM(model, toy_spec())
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for s in range(3):
        batch = make_batch(40 + s)
        batch["mask"][:, 2] = False  # vision missing everywhere
        train_step(model, opt, batch, plugin=cggm)
    assert all(math.isnan(a) for a in cggm.history.acc["vision"])
    assert not any(math.isnan(a) for a in cggm.history.acc["text"])
    with pytest.raises(ValueError, match=r"batch\['mask'\] must be bool \(B, 3\)"):
        batch = make_batch(50)
        batch["mask"] = batch["mask"][:, :2]
        train_step(model, opt, batch, plugin=cggm)


def test_unimodal_accuracy_matches_a_manual_evaluation_and_changes_nothing():
    model = Toy()
    cggm = CGGM(model, toy_spec())
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for s in range(3):
        train_step(model, opt, make_batch(60 + s), plugin=cggm)
    weights = [p.detach().clone() for p in cggm.classifiers.parameters()]
    loader = [make_batch(70), make_batch(71)]
    acc = cggm.unimodal_accuracy(loader)
    assert model.training and cggm._captured == {}
    assert all(torch.equal(w, p) for w, p in zip(weights, cggm.classifiers.parameters()))
    model.eval()
    for m in MODS:
        hits = counted = 0.0
        for b in loader:
            with torch.no_grad():
                h = model.enc[m](b[m].mean(1) if m == "vision" else b[m])
                h = h if m == "vision" else h[:, -1]
                pred = cggm.classifiers[m](h).squeeze(-1)
            nz = b["labels"] != 0
            hits += ((pred > 0) == (b["labels"] > 0))[nz].sum().item()
            counted += nz.sum().item()
        assert acc[m] == pytest.approx(hits / counted)


# --- checkpoints ------------------------------------------------------------------------------
def test_state_dict_round_trip_continues_identically():
    model, twin = pair()
    a = CGGM(model, toy_spec())
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for s in range(3):
        train_step(model, opt, make_batch(80 + s), plugin=a)
    tensors, meta = a.state_dict()
    meta = json.loads(json.dumps(meta))  # meta is JSON-safe
    twin.load_state_dict(model.state_dict())
    b = CGGM(twin, toy_spec(), CGGMConfig(seed=7))
    b.load_state_dict(tensors, meta)
    opt_b = torch.optim.Adam(twin.parameters(), lr=1e-2)
    opt_b.load_state_dict(opt.state_dict())
    batch = make_batch(90)
    train_step(model, opt, batch, plugin=a)
    train_step(twin, opt_b, batch, plugin=b)
    assert b.history.to_dict() == a.history.to_dict()
    for p, q in zip(a.classifiers.parameters(), b.classifiers.parameters()):
        assert torch.equal(p, q)
    two = {m: {"output": f"enc.{m}", "layout": "BTD"} for m in ("text", "audio")}
    other = CGGM(Toy(), HookSpec(features={m: m for m in two}, trainable=["head"], encoders=two))
    with pytest.raises(ValueError, match="state is for modalities"):
        other.load_state_dict(tensors, meta)


# --- integration with the training stages ---------------------------------------------------------
def tiny_recipe(**top):
    """A tiny MulT recipe, two pretrain epochs on 48 samples, one prompt epoch; ``top`` adds or
    replaces top-level tables (``cggm``, ``backbone``)."""
    from promptkit.recipes import from_dict

    return from_dict(tiny_recipe_dict(
        name="tiny-cggm", sizes=(48, 16, 16), seq_lens=(4, 4, 4),
        pretrain={"epochs": 2, "batch_size": 16, "lr": 1e-2},
        prompt={"epochs": 1, "batch_size": 16, "lr": 1e-2, "eta": 0.7, "prompter": {"prompt_length": 2}},
        **top,
    ))


@pytest.fixture(scope="module")
def tiny_data():
    from promptkit.recipes import load_recipe_data

    return load_recipe_data(tiny_recipe())


def tiny_mult(seed: int = 0, feature_dims=DIMS):
    import backbones

    torch.manual_seed(seed)
    return backbones.create_backbone("mult", feature_dims=dict(feature_dims), d_model=10, num_heads=2, layers=1)


@pytest.mark.parametrize("table", [None, "[cggm]\nrho = 1.5\nlam = 0.1\n"])
def test_cli_train_with_cggm_logs_B_per_modality(tmp_path, capsys, table):
    from promptkit.checkpoint import load_checkpoint
    from promptkit.cli import main

    # 32 training samples in batches of 16: two steps per epoch
    text = tiny_recipe_toml(sizes=(32, 16, 16), seq_lens=(4, 4, 4), pretrain={"epochs": 3, "batch_size": 16})
    recipe = write_recipe(tmp_path, text + (table or ""))
    out = tmp_path / "run"
    argv = ["train", "--recipe", str(recipe), "--cggm", "--epochs", "1", "--out", str(out), "--device", "cpu",
            "--quiet"]
    assert main(argv) == 0, capsys.readouterr().err
    (entry,) = json.loads((out / "results.json").read_text())["history"]
    assert {f"B_{m}" for m in MODS} | {f"acc_{m}" for m in MODS} | {"guarded_steps"} <= set(entry)
    assert all(0.0 <= entry[f"B_{m}"] <= 2.0 for m in MODS) and entry["guarded_steps"] >= 1
    _, meta = load_checkpoint(out / "last.safetensors", kind="train-state")
    (plugin,) = meta["plugins"]
    assert plugin["type"] == "CGGM"
    assert plugin["meta"]["config"]["rho"] == (1.5 if table else CGGMConfig().rho)
    assert len(plugin["meta"]["history"]["B"]["text"]) == 2  # 32 samples / batch 16


def test_pretrain_with_B_held_at_one_and_rho_one_equals_plain_pretrain_bit_for_bit(tmp_path, tiny_data):
    from promptkit.checkpoint import load_checkpoint
    from promptkit.train import pretrain

    unity = tiny_recipe(cggm={"rho": 1.0, "lam": 0.0, "warmup_steps": 10**9})  # ρ·B = 1 at every step
    with_cggm = pretrain(unity, tiny_data, tmp_path / "cggm", cggm=True, device="cpu", progress=False)
    plain = pretrain(unity, tiny_data, tmp_path / "plain", cggm=False, device="cpu", progress=False)
    assert with_cggm.history[-1]["B_text"] == 1.0 and "B_text" not in plain.history[-1]
    assert with_cggm.test == plain.test
    assert [h["train_loss"] for h in with_cggm.history] == [h["train_loss"] for h in plain.history]
    a, _ = load_checkpoint(tmp_path / "cggm" / "backbone.safetensors", kind="backbone")
    b, _ = load_checkpoint(tmp_path / "plain" / "backbone.safetensors", kind="backbone")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_mult_modality_gradients_are_rho_B_times_a_plain_twins():
    """On MulT's registered spec: after after_backward, θ_m's gradient is exactly ρ·B_m times the
    gradient a plain twin (same weights, same batch, no CGGM) computes; the head's is unchanged."""
    model, twin = tiny_mult(), tiny_mult()
    cggm = CGGM(model, None, CGGMConfig(rho=1.3, lam=0.0))
    owner = {id(p): m for m in MODS for p in cggm._params[m]}
    assert {n.split(".")[0] for n, p in model.named_parameters() if id(p) not in owner} == {"head"}
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    seen_unguarded = False
    for step in range(5):
        batch = make_batch(100 + step)
        twin.load_state_dict(model.state_dict())
        grads = []
        for net in (model, twin):
            net.zero_grad()
            torch.manual_seed(step)  # same dropout masks in both
            preds = net(**{m: batch[m] for m in MODS})
            if net is model:
                assert cggm.extra_loss(model, batch, preds, batch["labels"]) is None  # lam = 0
            task_loss(preds, batch["labels"], "regression").backward()
            if net is model:
                cggm.after_backward(model)
            grads.append({n: p.grad.clone() for n, p in net.named_parameters()})
        B = {m: cggm.history.B[m][-1] for m in MODS}
        for (n, p) in model.named_parameters():
            m = owner.get(id(p))
            want = grads[1][n] * (1.3 * B[m]) if m else grads[1][n]
            assert torch.equal(grads[0][n], want), n
        seen_unguarded |= not cggm.history.guarded[-1] and len(set(B.values())) > 1
        opt.step()
    assert seen_unguarded, "no step exercised a non-uniform B"


class NoEncoderToy(nn.Module):
    """A registered-backbone stand-in whose hook spec names no per-modality encoders."""

    def __init__(self, feature_dims, out_dim=1, task="regression"):
        super().__init__()
        self.feature_dims, self.out_dim, self.task = dict(feature_dims), out_dim, task
        self.enc = nn.ModuleDict({m: nn.Linear(d, 4) for m, d in feature_dims.items()})
        self.head = nn.Linear(4 * len(feature_dims), out_dim)

    def forward(self, **x):
        return self.head(torch.cat([self.enc[m](x[m]).mean(1) for m in self.feature_dims], -1))

    def config(self):
        return {"feature_dims": self.feature_dims, "out_dim": self.out_dim, "task": self.task}


@pytest.fixture
def no_encoder_backbone(monkeypatch):
    import backbones._registry as registry
    from promptkit import hookspec

    def cggm_no_encoders(**cfg):
        return NoEncoderToy(**cfg)

    monkeypatch.setitem(registry._BACKBONES, "cggm_no_encoders", cggm_no_encoders)
    def spec_without_encoders(model):
        return HookSpec(features={m: m for m in model.feature_dims}, trainable=["head"])

    monkeypatch.setitem(hookspec._SPECS, NoEncoderToy, spec_without_encoders)
    return "cggm_no_encoders"


def test_recipe_with_cggm_on_a_backbone_without_encoders_is_a_clear_error(no_encoder_backbone, tmp_path, tiny_data,
                                                                          capsys):
    from promptkit.cli import main
    from promptkit.train import pretrain

    recipe = tiny_recipe(backbone={"name": no_encoder_backbone}, cggm={"rho": 1.3})
    msg = "backbone NoEncoderToy's hook spec names no per-modality encoders; CGGM needs HookSpec.encoders"
    with pytest.raises(ValueError, match=msg):
        pretrain(recipe, tiny_data, tmp_path / "run", cggm=True, device="cpu", progress=False)
    assert not (tmp_path / "run").exists()  # refused before anything was written
    # the same through the console script: one line, exit status 2
    toml = write_recipe(tmp_path, f'[backbone]\nname = "{no_encoder_backbone}"\n'
                                  '[data]\nsizes = { train = 8, valid = 8, test = 8 }\n'
                                  '[data.synthetic]\nseq_lens = { text = 2, audio = 2, vision = 2 }\n[cggm]\nrho = 1.3\n')
    assert main(["train", "--recipe", str(toml), "--cggm", "--out", str(tmp_path / "cli"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("promptkit: error: " + msg) and err.count("\n") == 1


def test_prompt_tune_with_cggm_modulates_each_modalitys_prompts_and_mmgm(monkeypatch, tmp_path, tiny_data):
    """The engine's real loop: every modality's prompt and MMGM gradients get that modality's ρ·B."""
    import promptkit.cggm
    from promptkit.train.prompt_stage import prompt_tune

    made: list = []
    checked = {m: 0 for m in MODS}

    class Recording(CGGM):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

        def after_backward(self, model=None):
            B = dict(zip(self.modalities, self._pending))
            raw = {m: [None if p.grad is None else p.grad.clone() for p in self._params[m]] for m in self.modalities}
            super().after_backward(model)
            for m in self.modalities:
                for p, g in zip(self._params[m], raw[m]):
                    if g is not None:
                        assert torch.equal(p.grad, g * (self.config.rho * B[m]))
                        checked[m] += 1

    monkeypatch.setattr(promptkit.cggm, "CGGM", Recording)
    backbone = tiny_mult(feature_dims=tiny_data.feature_dims)
    recipe = tiny_recipe(cggm={"rho": 1.3})
    prompter, result = prompt_tune(recipe, tiny_data, backbone, tmp_path / "prompt", cggm=True, device="cpu",
                                   progress=False)
    (plugin,) = made
    per_modality = prompter.modality_parameters()
    for m in MODS:
        ids = {id(p) for p in plugin._params[m]}
        assert per_modality[m] and all(id(p) in ids for p in per_modality[m]), m
        assert all(not p.requires_grad for p in plugin._params[m] if id(p) not in {id(q) for q in per_modality[m]})
        assert checked[m] >= len(per_modality[m])  # each modality's prompts got gradients and were scaled
    assert len(plugin.history.B["text"]) == 3 and "B_audio" in result.history[0]


def test_shipped_cggm_recipe_is_mult_synth_plus_a_valid_cggm_table():
    from promptkit.recipes import load

    r, base = load("mult-synth-cggm"), load("mult-synth")
    assert CGGMConfig.from_dict(r.cggm) == CGGMConfig()  # the paper's defaults, spelled out
    assert r.replace(name=base.name, description=base.description, cggm=None) == base
