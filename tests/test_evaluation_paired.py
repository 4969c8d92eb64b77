"""Paired differences on identical masks, summaries over seeds, headroom and precision checks."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from promptkit.data import MSADataset
from promptkit.evaluation import (
    ProtocolResult,
    achievable_se,
    check_precision,
    compare_protocols,
    evaluate_protocol,
    headroom,
    paired_difference,
    share_recovered,
    summarize_over_seeds,
)
from promptkit.metrics import (
    classification_metrics,
    iemocap_binary_metrics,
    regression_metrics,
)


def result(preds, labels, kind="mosi", setting="complete") -> ProtocolResult:
    preds, labels = torch.as_tensor(preds, dtype=torch.float32), torch.as_tensor(labels)
    return ProtocolResult(cases={setting: {}}, kind=kind, predictions={setting: preds}, labels=labels)


LABELS = [1.0, -1.0, 2.0, -2.0]
A = [1.0, -1.0, 2.0, 2.0]  # right on 3 of 4
B = [1.0, 1.0, -2.0, 2.0]  # right on 1 of 4


def test_three_of_four_against_one_of_four_is_fifty_points_with_the_hand_se():
    d = paired_difference(result(A, LABELS), result(B, LABELS), "complete", "non0_acc2")
    # d = (0, 1, 1, 0): mean 0.5, sd = sqrt(1/3), se = sd / 2
    assert d.mean == pytest.approx(50.0)
    assert d.se == pytest.approx(100 * math.sqrt(1 / 3) / 2)
    assert d.n == 4 and d.method == "per-sample" and d.unit == "points"
    assert d.ci_low <= d.mean <= d.ci_high and 0 <= d.ci_low and d.ci_high <= 100
    assert paired_difference(result(B, LABELS), result(A, LABELS), "complete", "non0_acc2").mean == pytest.approx(-50.0)
    assert f"{d:.2f}" == "+50.00 ± 28.87"


def test_zero_labels_are_left_out_of_non0_but_not_of_has0():
    labels = LABELS + [0.0]
    a, b = result(A + [-1.0], labels), result(B + [1.0], labels)  # on the 0 label only B is right (>= 0)
    non0 = paired_difference(a, b, "complete", "non0_acc2")
    assert non0.n == 4 and non0.mean == pytest.approx(50.0)
    has0 = paired_difference(a, b, "complete", "has0_acc2")
    # has0 correctness: A (1, 1, 1, 0, 0), B (1, 0, 0, 0, 1) -> d = (0, 1, 1, 0, -1)
    assert has0.n == 5 and has0.mean == pytest.approx(20.0)
    assert has0.se == pytest.approx(100 * torch.tensor([0.0, 1, 1, 0, -1]).std().item() / math.sqrt(5))


def test_bootstrap_is_seeded_and_reproducible():
    g = torch.Generator().manual_seed(0)
    labels = torch.randn(40, generator=g)
    a, b = result(labels + 0.5 * torch.randn(40, generator=g), labels), result(torch.randn(40, generator=g), labels)
    for metric in ("non0_acc2", "non0_f1", "mae"):
        one = paired_difference(a, b, "complete", metric, n_boot=200, seed=3)
        two = paired_difference(a, b, "complete", metric, n_boot=200, seed=3)
        other = paired_difference(a, b, "complete", metric, n_boot=200, seed=4)
        assert one == two
        assert (one.ci_low, one.ci_high) != (other.ci_low, other.ci_high)
    f1 = paired_difference(a, b, "complete", "non0_f1", n_boot=200, seed=3)
    expected = 100 * (regression_metrics(a.predictions["complete"], labels)["non0_f1"]
                      - regression_metrics(b.predictions["complete"], labels)["non0_f1"])
    assert f1.method == "bootstrap" and f1.mean == pytest.approx(expected) and f1.se > 0
    for metric in ("has0_f1", "mae", "corr", "acc7"):  # the single-metric fast paths agree with the full definition
        full = regression_metrics(a.predictions["complete"], labels)[metric] - regression_metrics(b.predictions["complete"], labels)[metric]
        scale = 1.0 if metric in ("mae", "corr") else 100.0
        assert paired_difference(a, b, "complete", metric, n_boot=5).mean == pytest.approx(scale * full)
    mae = paired_difference(a, b, "complete", "mae", n_boot=200)
    assert mae.unit == "" and mae.mean < 0  # a is closer to the labels


def test_pairing_refuses_different_labels_missing_predictions_and_settings():
    a = result(A, LABELS)
    with pytest.raises(ValueError, match="labels differ"):
        paired_difference(a, result(B, [1.0, -1.0, 2.0, 3.0]), "complete", "non0_acc2")
    with pytest.raises(ValueError, match="no per-sample predictions"):
        paired_difference(a, ProtocolResult.from_dict(a.to_dict()), "complete", "non0_acc2")
    with pytest.raises(ValueError, match="no predictions for setting '\\{a\\}'"):
        paired_difference(a, result(B, LABELS), "{a}", "non0_acc2")
    with pytest.raises(ValueError, match="not one of"):
        paired_difference(a, result(B, LABELS), "complete", "no_such_metric", n_boot=5)


def test_classification_and_iemocap_accuracies_are_scored_per_sample():
    logits_a = torch.eye(3)[[0, 1, 2, 2]]
    logits_b = torch.eye(3)[[1, 1, 0, 0]]
    labels = torch.tensor([0, 1, 2, 1])
    d = paired_difference(result(logits_a, labels, "classification"), result(logits_b, labels, "classification"),
                          "complete", "acc")
    assert d.mean == pytest.approx(100 * (classification_metrics(logits_a, labels)["acc"]
                                          - classification_metrics(logits_b, labels)["acc"]))
    g = torch.Generator().manual_seed(1)
    la, lb = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    y = torch.randint(2, (6, 4), generator=g)
    ra, rb = result(la, y, "iemocap_binary"), result(lb, y, "iemocap_binary")
    for metric in ("avg_acc", "sad_acc"):
        expected = 100 * (iemocap_binary_metrics(la, y)[metric] - iemocap_binary_metrics(lb, y)[metric])
        assert paired_difference(ra, rb, "complete", metric).mean == pytest.approx(expected)


def _protocol_pair():
    g = torch.Generator().manual_seed(0)
    mods = ("text", "audio", "vision")
    data = MSADataset({m: torch.randn(24, 3, 2, generator=g) for m in mods}, torch.randn(24, generator=g), mods)

    def model(w):
        return lambda f, mask: sum(wi * mask[:, i].float() * f[m].mean((1, 2)) for i, (m, wi) in enumerate(zip(mods, w)))[:, None]

    kw = dict(rates=(0.5,), seed=0)
    return evaluate_protocol(model((1.0, 2.0, -1.0)), data, "mosi", **kw), evaluate_protocol(model((0.5, -1.0, 1.0)), data, "mosi", **kw)


def test_compare_protocols_avg_is_the_difference_of_the_case_averages():
    a, b = _protocol_pair()
    out = compare_protocols(a, b, "non0_acc2", n_boot=50)
    assert list(out) == [*a.case_names, "avg", "complete", "rate=0.5"]
    assert out["avg"].mean == pytest.approx(100 * (a.cases["avg"]["non0_acc2"] - b.cases["avg"]["non0_acc2"]))
    assert out["{a,t}"].mean == pytest.approx(100 * (a.cases["{a,t}"]["non0_acc2"] - b.cases["{a,t}"]["non0_acc2"]))
    mae = compare_protocols(a, b, "mae", settings=["avg"], n_boot=20)["avg"]
    assert mae.mean == pytest.approx(a.cases["avg"]["mae"] - b.cases["avg"]["mae"])
    assert out["avg"].to_dict()["setting"] == "avg"


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(-3, 3), st.floats(-3, 3, width=32), st.floats(-3, 3, width=32)), min_size=2, max_size=30
    )
)
def test_paired_mean_is_the_difference_of_the_two_accuracies(rows):
    labels = [float(r[0]) for r in rows]
    a, b = result([r[1] for r in rows], labels), result([r[2] for r in rows], labels)
    for metric in ("has0_acc2", "non0_acc2"):
        acc_a = regression_metrics(a.predictions["complete"], a.labels)[metric]
        acc_b = regression_metrics(b.predictions["complete"], b.labels)[metric]
        if math.isnan(acc_a):  # every label 0
            with pytest.raises(ValueError):
                paired_difference(a, b, "complete", metric, n_boot=5)
            continue
        assert paired_difference(a, b, "complete", metric, n_boot=5).mean == pytest.approx(100 * (acc_a - acc_b), abs=1e-9)


def test_summarize_over_seeds():
    s = summarize_over_seeds([70.0, 72.0, 74.0])
    assert s["mean"] == pytest.approx(72.0) and s["std"] == pytest.approx(2.0)
    assert s["se"] == pytest.approx(2.0 / math.sqrt(3)) and s["per_seed"] == [70.0, 72.0, 74.0]
    one = summarize_over_seeds([5.0])
    assert one["mean"] == 5.0 and math.isnan(one["se"]) and math.isnan(one["std"])
    with pytest.raises(ValueError):
        summarize_over_seeds([])


def test_headroom_and_share_recovered():
    ceiling, baseline, method = {"{a}": 80.0, "{t}": 70.0}, {"{a}": 60.0, "{t}": 70.0}, {"{a}": 70.0, "{t}": 75.0}
    assert headroom(ceiling, baseline) == {"{a}": 20.0, "{t}": 0.0}
    share = share_recovered(method, baseline, ceiling)
    assert share["{a}"] == pytest.approx(0.5) and math.isnan(share["{t}"])
    assert share_recovered({"{a}": 55.0}, baseline, ceiling)["{a}"] == pytest.approx(-0.25)
    with pytest.raises(ValueError, match="lacks"):
        share_recovered({"{v}": 1.0}, baseline, ceiling)


def test_check_precision_warns_with_the_numbers():
    assert achievable_se(400) == pytest.approx(2.5)
    assert achievable_se(100, discordance=0.04) == pytest.approx(2.0)
    with pytest.warns(UserWarning) as caught:
        check_precision(400, 1.0, what="Table 2 Incom")
    message = str(caught[0].message)
    assert "Table 2 Incom" in message and "400" in message and "2.50" in message and "1.00" in message
    assert "2500" in message  # samples needed: 1e4 * 0.25 / 1.0**2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_precision(10_000, 1.0) == pytest.approx(0.5)
