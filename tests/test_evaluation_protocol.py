"""The evaluation protocol: fixed case masks, the seeded sweep, stored predictions and metrics."""

from __future__ import annotations

import json
import math

import pytest
import torch

from promptkit.data import MSADataset
from promptkit.evaluation import (
    COMPLETE,
    ProtocolResult,
    evaluate_protocol,
    predict_settings,
    protocol_masks,
    rate_key,
    zero_filled_forward,
)
from promptkit.metrics import classification_metrics, regression_metrics
from promptkit.modalities import ModalitySet

MODS = ("text", "audio", "vision")
RATES = (0.1, 0.5, 1.0)


def make_dataset(n: int = 30, modalities=MODS, seed: int = 0, classes: int = 0) -> MSADataset:
    g = torch.Generator().manual_seed(seed)
    feats = {m: torch.randn(n, 3 + i, 2, generator=g) for i, m in enumerate(modalities)}
    feats[modalities[0]][:, 0, 0] = torch.arange(n, dtype=torch.float32)  # sample id, read by IdForward
    if classes:
        labels = torch.randint(classes, (n,), generator=g)
    else:
        labels = torch.round(torch.randn(n, generator=g) * 2)  # some labels exactly 0
    return MSADataset(feats, labels, modalities)


class IdForward:
    """Records every mask; predicts ``10 * sample id + case id`` so predictions reveal the masks."""

    def __init__(self, modalities=MODS) -> None:
        self.ms = ModalitySet(modalities)
        self.first = modalities[0]
        self.masks: list[torch.Tensor] = []

    def __call__(self, features, mask):
        self.masks.append(mask.clone())
        return (10 * features[self.first][:, 0, 0] + self.ms.case_ids_from_masks(mask)).unsqueeze(-1)


def decode(pred: torch.Tensor, modalities=MODS) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sample ids, masks)`` from IdForward's predictions."""
    ids = torch.div(pred, 10, rounding_mode="floor").long()
    return ids, ModalitySet(modalities).masks_from_case_ids(pred.long() % 10)


class LinearForward:
    """A deterministic model: weighted means of the available features."""

    def __init__(self, weights, out_dim: int = 1, seed: int = 1) -> None:
        self.w = weights
        self.head = torch.randn(1, out_dim, generator=torch.Generator().manual_seed(seed))
        self.masks: list[torch.Tensor] = []

    def __call__(self, features, mask):
        self.masks.append(mask.clone())
        s = sum(w * mask[:, i].float() * features[m].mean((1, 2)) for i, (m, w) in enumerate(zip(MODS, self.w)))
        return s[:, None] * self.head + 0.1


def test_every_sample_of_a_case_gets_exactly_that_case_mask():
    data = make_dataset()
    ms = ModalitySet(MODS)
    result = evaluate_protocol(IdForward(), data, "mosi", rates=RATES, batch_size=7)
    assert set(result.case_names) == {c.name for c in ms.incomplete_cases} and len(result.case_names) == 6
    for case in ms.incomplete_cases:
        ids, masks = decode(result.predictions[case.name])
        assert torch.equal(ids, torch.arange(len(data)))  # row i is sample i, across batch boundaries
        assert torch.equal(masks, ms.case_mask(case, len(data))), case.name
    _, complete = decode(result.predictions[COMPLETE])
    assert complete.all()


def test_evaluate_protocol_uses_protocol_masks():
    data = make_dataset()
    result = evaluate_protocol(IdForward(), data, "mosi", rates=RATES, seed=3)
    expected = protocol_masks(MODS, len(data), RATES, seed=3)
    assert list(result.predictions) == list(expected)
    assert list(expected)[-3:] == ["rate=0.1", "rate=0.5", "rate=1.0"] and "{a}" in expected
    for key, mask in expected.items():
        assert torch.equal(decode(result.predictions[key])[1], mask), key


def test_sweep_masks_are_identical_across_calls_and_models_and_change_with_the_seed():
    data = make_dataset()
    a, b, c = IdForward(), LinearForward((1.0, -2.0, 0.5)), IdForward()
    evaluate_protocol(a, data, "mosi", rates=RATES, seed=5, batch_size=8)
    evaluate_protocol(b, data, "mosi", rates=RATES, seed=5, batch_size=8)
    evaluate_protocol(c, data, "mosi", rates=RATES, seed=5, batch_size=8)
    assert torch.equal(torch.cat(a.masks), torch.cat(b.masks))
    assert torch.equal(torch.cat(a.masks), torch.cat(c.masks))
    first, again = protocol_masks(MODS, 200, RATES, seed=5), protocol_masks(MODS, 200, RATES, seed=5)
    other = protocol_masks(MODS, 200, RATES, seed=6)
    for key in first:
        assert torch.equal(first[key], again[key])
    assert not torch.equal(first["rate=0.5"], other["rate=0.5"])
    assert torch.equal(first["{a}"], other["{a}"])


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.7, 1.0])
def test_rate_masks_have_about_the_requested_missing_share(rate):
    mask = protocol_masks(MODS, 4000, (rate,), seed=0)[rate_key(rate)]
    incomplete = (~mask.all(1)).float().mean().item()
    assert abs(incomplete - rate) < 0.03
    assert mask.any(1).all()  # never every modality missing


def test_shared_initials_get_distinct_setting_keys_one_per_case_id():
    # was refused while case names were first initials ({a} for both); now shortest unique prefixes
    masks = protocol_masks(("audio", "acoustic"), 4, (0.5,))
    assert list(masks) == ["{au}", "{ac}", "complete", "rate=0.5"]
    ms = ModalitySet(("audio", "acoustic"))
    assert [ms.case_id(k) for k in list(masks)[:3]] == [0, 1, 2]
    assert masks["{ac}"].tolist() == [[False, True]] * 4


def test_each_sample_and_case_is_forwarded_once_however_many_settings_need_it():
    """The rate settings reuse the fixed cases' predictions: (2**M - 1) * N rows in all, not 10 * N."""
    data = make_dataset(n=30)
    model = IdForward()
    seen: list[tuple[int, int]] = []

    def forward(features, mask):
        out = model(features, mask)
        seen.extend(zip(features["text"][:, 0, 0].long().tolist(), model.ms.case_ids_from_masks(mask).tolist()))
        return out

    result = evaluate_protocol(forward, data, "mosi", rates=RATES, seed=3, batch_size=8)
    assert len(seen) == 7 * len(data) == len(set(seen))  # 6 incomplete cases + complete, each pair once
    for key, mask in protocol_masks(MODS, len(data), RATES, seed=3).items():  # and every setting's own masks
        ids, got = decode(result.predictions[key])
        assert torch.equal(got, mask) and torch.equal(ids, torch.arange(len(data))), key
    # a fixed case runs on the batches predict_masks would run: 8, 8, 8, 6 samples
    assert [m.shape[0] for m in model.masks[:4]] == [8, 8, 8, 6]


def test_only_the_cases_some_setting_needs_are_forwarded():
    data = make_dataset(n=20)
    model = IdForward()
    ms = ModalitySet(MODS)
    masks = {"mixed": ms.masks_from_case_ids(torch.tensor([0, 2] * 10))}
    preds = predict_settings(model, data, masks, batch_size=64)
    assert sum(m.shape[0] for m in model.masks) == 20  # ten samples of case 0, ten of case 2
    ids, got = decode(preds["mixed"])
    assert torch.equal(ids, torch.arange(20)) and torch.equal(got, masks["mixed"])


def test_stored_predictions_match_a_direct_forward():
    data = make_dataset()
    model = LinearForward((1.0, -2.0, 0.5))
    result = evaluate_protocol(model, data, "mosi", rates=RATES, batch_size=4)
    masks = protocol_masks(MODS, len(data), RATES)
    for key in ("{a,t}", COMPLETE, "rate=0.5"):
        direct = model(data.features, masks[key]).squeeze(-1)
        torch.testing.assert_close(result.predictions[key], direct)
    assert torch.equal(result.labels, data.labels)


def test_metrics_equal_the_pure_functions_on_the_stored_predictions():
    data = make_dataset()
    result = evaluate_protocol(LinearForward((1.0, -2.0, 0.5)), data, "mosi", rates=RATES)
    for case in result.case_names + [COMPLETE]:
        assert result.cases[case] == pytest.approx(regression_metrics(result.predictions[case], data.labels), nan_ok=True)
    for rate in RATES:
        expected = regression_metrics(result.predictions[rate_key(rate)], data.labels)
        assert result.rates[rate] == pytest.approx(expected, nan_ok=True)
    mean_acc = sum(result.cases[c]["non0_acc2"] for c in result.case_names) / 6
    assert result.cases["avg"]["non0_acc2"] == pytest.approx(mean_acc)


def test_classification_predictions_keep_their_class_dimension():
    data = make_dataset(classes=3)
    result = evaluate_protocol(LinearForward((1.0, 1.0, 1.0), out_dim=3), data, "classification", rates=())
    assert result.predictions["{v}"].shape == (len(data), 3) and result.rates == {}
    assert result.cases["{v}"] == pytest.approx(classification_metrics(result.predictions["{v}"], data.labels))


def test_to_dict_leaves_predictions_out_and_from_dict_reads_it_back():
    data = make_dataset()
    result = evaluate_protocol(LinearForward((1.0, -2.0, 0.5)), data, "mosi", rates=RATES)
    text = json.dumps(result.to_dict())
    assert "predictions" not in text and "labels" not in text
    back = ProtocolResult.from_dict(json.loads(text))
    assert back.rates.keys() == result.rates.keys() and back.kind == "mosi" and back.modalities == MODS
    for case, metrics in result.cases.items():
        for k, v in metrics.items():
            assert math.isnan(v) and math.isnan(back.cases[case][k]) or back.cases[case][k] == v
    assert back.predictions == {} and back.labels is None


def test_zero_filled_forward_zeroes_exactly_the_missing_inputs():
    seen = {}

    def backbone(**x):
        seen.update(x)
        return torch.zeros(next(iter(x.values())).shape[0], 1)

    data = make_dataset(n=4)
    mask = torch.tensor([[True, False, True], [False, True, False], [True, True, True], [False, False, True]])
    zero_filled_forward(backbone, MODS)(data.features, mask)
    for i, m in enumerate(MODS):
        for b in range(4):
            assert bool((seen[m][b] == 0).all()) != bool(mask[b, i]) or not data.features[m][b].any()
            if mask[b, i]:
                assert torch.equal(seen[m][b], data.features[m][b])


# --- any modality set ---------------------------------------------------------------------------

MODS5 = ("text", "audio", "vision", "pose", "physio")  # pose and physio share an initial


def test_five_modalities_give_every_case_once_keyed_by_a_unique_name():
    ms = ModalitySet(MODS5)
    masks = protocol_masks(MODS5, 6, (0.5,))
    cases = [k for k in masks if k.startswith("{")]
    assert cases == [c.name for c in ms.incomplete_cases] and len(set(cases)) == 30
    assert [ms.case_id(k) for k in cases] == list(range(30))
    for key in cases:
        assert torch.equal(masks[key], ms.case_mask(key, 6)), key
    assert "{po}" in masks and "{ph}" in masks and not masks["{po}"].equal(masks["{ph}"])


def test_evaluate_protocol_on_five_modalities_scores_each_case_with_its_own_mask():
    data = make_dataset(12, modalities=MODS5)
    ms = ModalitySet(MODS5)

    def forward(features, mask):  # predicts 100 * sample id + case id: the masks can be read back
        return (100 * features["text"][:, 0, 0] + ms.case_ids_from_masks(mask)).unsqueeze(-1)

    res = evaluate_protocol(forward, data, "mosi", rates=(0.5,))
    assert res.case_names == [c.name for c in ms.incomplete_cases]
    assert set(res.cases) == {*res.case_names, "avg", COMPLETE} and len(res.cases) == 32
    for name in (*res.case_names, COMPLETE):
        pred = res.predictions[name]
        assert torch.equal(pred.long() % 100, torch.full((12,), ms.case_id(name))), name
