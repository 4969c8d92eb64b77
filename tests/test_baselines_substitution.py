"""The paper's baselines as methods: modality substitution (MS), modality dropout (MD), lower bound (LB).

Tiny data (24/12/12 samples, 4-6 steps), a one-layer MulT of width 8 and one epoch per stage; every
method is trained once per module (``trained``) and the tests read it."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from _helpers import BASELINE_SEQ, fresh_backbone_file, tiny_baseline_recipe
from torch import nn

from promptkit.backbone_files import load_backbone
from promptkit.data import MSADataset, make_synthetic_mosi
from promptkit.evaluation import evaluate_protocol, zero_filled_forward
from promptkit.methods import get_method, list_methods, lower_bound, substitution
from promptkit.methods.controls import FullFineTunePrompter
from promptkit.methods.lower_bound import lb_forward
from promptkit.methods.substitution import (
    substitute,
    substituted_forward,
    training_means,
)
from promptkit.modalities import ModalitySet

SEQ = BASELINE_SEQ
METHODS = ("ms_zero", "ms_mean", "md_zero", "md_mean", "lb")
SPLIT_SHIFT = {"train": 1.0, "valid": 5.0, "test": -4.0}  # each split's valid steps moved by its own offset


def _shifted(data):
    """``data`` with every valid (non-padding) step of a split moved by that split's offset, so the
    three splits' means differ by known amounts and the padding stays exactly zero."""
    splits = {}
    for split, ds in data.splits.items():
        feats = {}
        for m, x in ds.features.items():
            valid = (x.abs().amax(-1, keepdim=True) > 0).float()
            feats[m] = x + SPLIT_SHIFT[split] * valid
        splits[split] = MSADataset(feats, ds.labels, ds.modalities)
    return dataclasses.replace(data, splits=splits)


@pytest.fixture(scope="module")
def recipe():
    return tiny_baseline_recipe()


@pytest.fixture(scope="module")
def data():
    return _shifted(make_synthetic_mosi(sizes=(24, 12, 12), seq_lens=SEQ))


@pytest.fixture(scope="module")
def backbone_file(recipe, data, tmp_path_factory):
    return fresh_backbone_file(recipe, data, tmp_path_factory.mktemp("pretrained"))


@pytest.fixture(scope="module")
def trained(recipe, data, backbone_file, tmp_path_factory):
    """Every method trained once; the substitute calls of md_mean's and lb's training recorded as
    ``(grad enabled, mask, fill)``."""
    out = tmp_path_factory.mktemp("methods")
    original = substitution.substitute
    methods = {}
    for name in METHODS:
        calls: list = []

        def recording(features, mask, modalities, fill=None, calls=calls):
            calls.append((torch.is_grad_enabled(), mask.clone(), fill))
            return original(features, mask, modalities, fill)

        mp = pytest.MonkeyPatch()
        mp.setattr(substitution, "substitute", recording)
        mp.setattr(lower_bound, "substitute", recording)
        try:
            methods[name] = get_method(name)(recipe, data, backbone_file, out / name, device="cpu", progress=False)
        finally:
            mp.undo()
        methods[f"_{name}_calls"] = calls
    return methods


def _captured_inputs(module: nn.Module, call):
    """The keyword inputs ``module`` received while ``call()`` ran."""
    seen: list[dict] = []
    handle = module.register_forward_pre_hook(lambda mod, args, kwargs: seen.append(dict(kwargs)), with_kwargs=True)
    try:
        call()
    finally:
        handle.remove()
    assert seen, "the backbone was never called"
    return seen[-1]


def _n(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_every_baseline_is_registered():
    assert set(METHODS) <= set(list_methods())


def test_training_means_average_only_the_valid_steps():
    x = torch.zeros(2, 3, 2)
    x[0, 1:] = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # sample 0: one padding step, then two valid ones
    x[1, 2:] = torch.tensor([[5.0, 0.0]])  # sample 1: two padding steps; a zero feature on a valid step
    means = training_means(MSADataset({"text": x, "audio": torch.zeros(2, 2, 1)}, torch.zeros(2)))
    torch.testing.assert_close(means["text"], torch.tensor([3.0, 2.0]))  # over the 3 valid steps, not all 6
    torch.testing.assert_close(means["audio"], torch.zeros(1))  # no valid step at all: zeros


def test_ms_mean_fills_with_the_training_splits_means(data, trained):
    method = trained["ms_mean"]
    per_split = {s: training_means(ds) for s, ds in data.splits.items()}
    for m in data.modalities:  # the splits really differ, by the shifts the data were built with
        assert (per_split["valid"][m] - per_split["train"][m]).abs().min() > 1.0
        assert (per_split["test"][m] - per_split["train"][m]).abs().min() > 1.0
        torch.testing.assert_close(method.info["fill_values"][m], per_split["train"][m])
    test = data.splits["test"]
    feats = {m: x[:3] for m, x in test.features.items()}
    mask = torch.tensor([[True, False, True], [False, True, True], [True, True, True]])
    seen = _captured_inputs(method.modules["backbone"], lambda: method.forward(feats, mask))
    for i, m in enumerate(data.modalities):
        for b in range(3):
            if mask[b, i]:
                assert torch.equal(seen[m][b], feats[m][b])
            else:  # the training mean on every step, padding steps included
                expected = per_split["train"][m].expand(SEQ[m], -1)
                torch.testing.assert_close(seen[m][b], expected)
                assert not torch.allclose(seen[m][b], per_split["test"][m].expand(SEQ[m], -1))


def test_substitute_touches_only_missing_modalities_of_missing_samples():
    mods = ("text", "audio", "vision")
    torch.manual_seed(0)
    feats = {m: torch.randn(4, 3, d) for m, d in zip(mods, (2, 3, 4))}
    before = {m: x.clone() for m, x in feats.items()}
    fill = {m: torch.full((x.shape[-1],), 7.0 + i) for i, (m, x) in enumerate(feats.items())}
    mask = torch.tensor([[True, True, True], [False, True, True], [True, False, False], [False, True, False]])
    out = substitute(feats, mask, mods, fill)
    for i, m in enumerate(mods):
        assert torch.equal(feats[m], before[m])  # not in place
        for b in range(4):
            if mask[b, i]:
                assert torch.equal(out[m][b], before[m][b])
            else:
                assert torch.equal(out[m][b], fill[m].expand(3, -1))
    zero = substitute(feats, mask, mods)
    for i, m in enumerate(mods):
        assert torch.equal(zero[m], before[m] * mask[:, i, None, None])
    with pytest.raises(ValueError, match="fill of 'audio' has shape"):
        substitute(feats, mask, mods, {"audio": torch.zeros(5)})


def test_ms_zero_is_the_zero_filled_baseline(data, backbone_file, recipe, trained):
    bare = load_backbone(backbone_file, recipe=recipe)
    test = data.splits["test"]
    ms = ModalitySet(data.modalities)
    mask = ms.sample_masks(len(test), 0.8, torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = trained["ms_zero"].forward(test.features, mask)
        theirs = zero_filled_forward(bare, data.modalities)(test.features, mask)
    torch.testing.assert_close(ours, theirs)
    assert trained["ms_zero"].trainable_params == 0 and trained["ms_mean"].trainable_params == 0


def test_md_mean_trains_the_backbone_and_fills_with_the_training_means(data, backbone_file, recipe, trained):
    method = trained["md_mean"]
    before = load_backbone(backbone_file, recipe=recipe).state_dict()
    after = method.modules["backbone"].state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point())
    means = training_means(data.splits["train"])
    calls = trained["_md_mean_calls"]
    training = [fill for grad, _, fill in calls if grad]
    assert training, "md_mean's training forward never went through substitute"
    assert any(not mask.all() for _, mask, _ in calls)  # modalities were dropped (eta 0.7)
    for fill in [f for _, _, f in calls]:  # training, validation: always the training means
        assert fill is not None and all(torch.equal(fill[m], means[m]) for m in data.modalities)
    feats = {m: x[:2] for m, x in data.splits["test"].features.items()}
    mask = torch.tensor([[False, True, True], [True, True, False]])
    seen = _captured_inputs(method.modules["backbone"], lambda: method.forward(feats, mask))
    torch.testing.assert_close(seen["text"][0], means["text"].expand(SEQ["text"], -1))
    torch.testing.assert_close(seen["vision"][1], means["vision"].expand(SEQ["vision"], -1))
    assert torch.equal(seen["text"][1], feats["text"][1])
    assert method.trainable_params == _n(method.modules["backbone"])


def test_md_zero_is_the_full_finetune_control(trained):
    method = trained["md_zero"]
    prompter = method.modules["prompter"]
    assert isinstance(prompter, FullFineTunePrompter) and prompter.trains_backbone
    assert method.trainable_params == prompter.trainable_summary()["trainable_params"] >= _n(prompter.backbone)


def test_lb_models_see_only_their_cases_modalities(data, trained):
    method = trained["lb"]
    ms = ModalitySet(data.modalities)
    test = data.splits["test"]
    g = torch.Generator().manual_seed(3)
    for case in ms.incomplete_cases:
        mask = ms.case_mask(case, len(test))
        noisy = {m: x if m in case.available else 100 * torch.randn(x.shape, generator=g)
                 for m, x in test.features.items()}
        with torch.no_grad():
            clean, perturbed = method.forward(test.features, mask), method.forward(noisy, mask)
        assert torch.equal(clean, perturbed), case.name
        present = case.available[0]  # the content of a present modality does reach the model
        moved = {**test.features, present: test.features[present] + torch.randn(test.features[present].shape, generator=g)}
        with torch.no_grad():
            assert not torch.allclose(method.forward(moved, mask), clean), case.name


def test_lb_trains_each_model_with_its_case_fixed(data, trained):
    """Training and validation of the case models saw only the case masks, zero-filled, each case."""
    ms = ModalitySet(data.modalities)
    calls = trained["_lb_calls"]
    assert any(grad for grad, _, _ in calls) and all(fill is None for _, _, fill in calls)
    seen = {int(i) for _, mask, _ in calls for i in ms.case_ids_from_masks(mask).unique()}
    assert seen == {c.id for c in ms.incomplete_cases}
    for _, mask, _ in calls:  # every batch holds one case: a case model never sees another case's modalities
        assert (mask == mask[0]).all()


class _Constant(nn.Module):
    """A stand-in backbone: predicts its own number, and records the batch it saw."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value
        self.seen: dict[str, torch.Tensor] = {}

    def forward(self, text, audio, vision):
        self.seen = {"text": text, "audio": audio, "vision": vision}
        return torch.full((text.shape[0], 1), self.value)


def test_lb_forward_sends_each_sample_to_the_model_of_its_case():
    mods = ("text", "audio", "vision")
    ms = ModalitySet(mods)
    models = {c.id: _Constant(10.0 + c.id) for c in ms.cases}
    forward = lb_forward(models, mods)
    ids = torch.tensor([6, 0, 3, 0, 5, 1, 2, 4, 6, 2])  # every case, mixed and repeated
    mask = ms.masks_from_case_ids(ids)
    feats = {m: torch.randn(len(ids), 2, 3) + 1 for m in mods}
    out = forward(feats, mask)
    assert out.shape == (len(ids), 1)
    assert torch.equal(out[:, 0], 10.0 + ids.float())
    for cid, model in models.items():  # each model saw its rows only, with its absent modalities zero
        rows = (ids == cid).nonzero().flatten()
        for m in mods:
            want = feats[m][rows] if m in ms.case(cid).available else torch.zeros_like(feats[m][rows])
            assert torch.equal(model.seen[m], want)
    with pytest.raises(KeyError, match="no model for case"):
        lb_forward({0: _Constant(0.0)}, mods)(feats, mask)


def test_lb_forward_matches_each_case_model_on_a_mixed_batch(data, trained):
    method = trained["lb"]
    ms = ModalitySet(data.modalities)
    test = data.splits["test"]
    ids = torch.arange(len(test)) % len(ms.cases)
    mask = ms.masks_from_case_ids(ids)
    with torch.no_grad():
        mixed = method.forward(test.features, mask)
        for case in ms.cases:
            rows = (ids == case.id).nonzero().flatten()
            alone = substituted_forward(method.modules[case.name], data.modalities)(
                {m: x[rows] for m, x in test.features.items()}, mask[rows])
            torch.testing.assert_close(mixed[rows], alone)
    models = [method.modules[c.name] for c in ms.cases]
    assert len({id(m) for m in models}) == len(models)  # one model per case, the complete one included
    x = {m: v[:2] for m, v in test.features.items()}
    with torch.no_grad():  # the case models differ from each other
        outs = [substituted_forward(m, data.modalities)(x, ms.complete_mask(2)) for m in models]
    assert any(not torch.allclose(outs[0], o) for o in outs[1:])
    assert method.trainable_params == sum(_n(method.modules[c.name]) for c in ms.incomplete_cases)


@pytest.mark.parametrize("name", METHODS)
def test_each_method_runs_through_the_protocol(name, data, trained):
    method = trained[name]
    assert method.name == name
    result = evaluate_protocol(method.forward, data.splits["test"], "mosi", rates=(0.5, 1.0), seed=0, batch_size=5)
    ms = ModalitySet(data.modalities)
    assert set(result.cases) == {c.name for c in ms.incomplete_cases} | {"avg", "complete"}
    assert set(result.rates) == {0.5, 1.0}
    assert all(math.isfinite(v) for case in result.cases.values() for v in case.values())
    assert all(p.shape == (len(data.splits["test"]),) for p in result.predictions.values())


def test_lb_case_models_are_seeded_by_the_training_seed(recipe, data, tmp_path):
    """LB's spread over training seeds is real: ``[prompt] seed`` seeds its case models, not the
    shared ``[pretrain] seed`` (which once made five seeds' LB runs one and the same run)."""
    case = ModalitySet(data.modalities).incomplete_cases[0]

    def weights(seed: int, name: str) -> dict[str, torch.Tensor]:
        seeded = recipe.replace(prompt=dataclasses.replace(recipe.prompt, seed=seed))
        model, _ = lower_bound.train_case_model(seeded, data, case, tmp_path / name, device="cpu", progress=False)
        return {k: v.clone() for k, v in model.state_dict().items()}

    first, again, other = weights(0, "a"), weights(0, "b"), weights(1, "c")
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)
    assert recipe.pretrain.seed == 0  # the pretrain seed is the same in all three runs
