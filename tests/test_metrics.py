"""promptkit.metrics: MMSA / MulT definitions pinned on hand-computed cases."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import multiclass_f1_score

import promptkit.metrics.classes
import promptkit.metrics.functional
import promptkit.metrics.kinds
from promptkit.metrics import (
    EMOTIONS,
    KINDS,
    ClassificationMetrics,
    IemocapBinaryMetrics,
    RegressionMetrics,
    SimsMetrics,
    classification_metrics,
    iemocap_binary_metrics,
    metrics_for,
    pearson,
    primary_metric,
    regression_metrics,
    sims_metrics,
    weighted_f1,
)

REGRESSION_KEYS = {"has0_acc2", "has0_f1", "non0_acc2", "non0_f1", "acc5", "acc7", "mae", "corr"}


def test_docstring_examples_hold():
    modules = (promptkit.metrics.functional, promptkit.metrics.classes, promptkit.metrics.kinds)
    results = [doctest.testmod(module, optionflags=doctest.ELLIPSIS) for module in modules]
    assert sum(result.attempted for result in results) > 10
    assert sum(result.failed for result in results) == 0


# --------------------------------------------------------------------------- weighted F1, Pearson


def test_weighted_f1_matches_hand_calculation_with_class_only_in_pred():
    # class 0: support 2, predicted 1, TP 1 -> 2/3; class 1: 3, 3, 2 -> 2/3; class 2: 1, 1, 1 -> 1;
    # class 3 appears only in pred: weight 0. Weighted: (2*2/3 + 3*2/3 + 1*1) / 6 = 13/18.
    truth = [0, 0, 1, 1, 1, 2]
    pred = [0, 1, 1, 1, 3, 2]
    assert weighted_f1(truth, pred) == pytest.approx(13 / 18, abs=1e-12)


def test_weighted_f1_is_weighted_by_truth_not_pred():
    # truth [0,0,0,1], pred [0,0,1,1]: F1_0 = 4/5, F1_1 = 2/3 -> (3*0.8 + 1*2/3)/4
    assert weighted_f1([0, 0, 0, 1], [0, 0, 1, 1]) == pytest.approx((3 * 0.8 + 2 / 3) / 4)
    # swapped: truth [0,0,1,1]: (2*0.8 + 2*2/3)/4, a different number
    assert weighted_f1([0, 0, 1, 1], [0, 0, 0, 1]) == pytest.approx((2 * 0.8 + 2 * 2 / 3) / 4)


def test_weighted_f1_agrees_with_torchmetrics_weighted_on_random_labels():
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        truth = torch.randint(0, 5, (37,), generator=gen)
        pred = torch.randint(0, 5, (37,), generator=gen)
        expected = multiclass_f1_score(pred, truth, num_classes=5, average="weighted").item()
        assert weighted_f1(truth, pred) == pytest.approx(expected, abs=1e-6)


def test_pearson_matches_numpy_corrcoef():
    rng = np.random.default_rng(1)
    for _ in range(10):
        p, t = rng.normal(size=50), rng.normal(size=50)
        assert pearson(p, t) == pytest.approx(np.corrcoef(p, t)[0, 1], abs=1e-12)
    x = rng.normal(size=20)
    assert pearson(x, 3 * x + 1) == pytest.approx(1.0)
    assert pearson(x, -x) == pytest.approx(-1.0)


def test_pearson_is_nan_for_constant_or_single_sample():
    assert math.isnan(pearson([0.3, 0.3, 0.3], [1.0, 2.0, 3.0]))
    assert math.isnan(pearson([1.0, 2.0, 3.0], [0.1, 0.1, 0.1]))
    assert math.isnan(pearson([1.0], [2.0]))
    assert math.isnan(regression_metrics([0.3, 0.3, 0.3], [1.0, 2.0, 3.0])["corr"])


# --------------------------------------------------------------------------- MOSI / MOSEI


def test_regression_metrics_keys_and_python_floats():
    m = regression_metrics(torch.randn(16), torch.randn(16))
    assert set(m) == REGRESSION_KEYS
    assert all(type(v) is float for v in m.values())


def test_rounding_is_half_to_even():
    # np.round: 2.5 -> 2, 0.5 -> 0, -0.5 -> -0 (== 0), 1.5 -> 2, -2.5 -> -2
    pred = torch.tensor([2.5, 0.5, -0.5, 1.5, -2.5])
    assert regression_metrics(pred, torch.tensor([2.0, 0.0, 0.0, 2.0, -2.0]))["acc7"] == 1.0
    # half away from zero would give 3, 1, -1, 2, -3: only the 1.5 sample agrees with it
    assert regression_metrics(pred, torch.tensor([3.0, 1.0, -1.0, 1.0, -3.0]))["acc7"] == 0.0


def test_acc5_and_acc7_clip_before_rounding():
    pred = torch.tensor([2.4, 2.6, -7.0, 0.2])
    truth = torch.tensor([3.0, 3.0, -3.0, -0.2])
    m = regression_metrics(pred, truth)
    # acc5: clip +-2 -> pred [2, 2, -2, 0] truth [2, 2, -2, -0]: all agree
    assert m["acc5"] == 1.0
    # acc7: clip +-3 -> pred [2, 3, -3, 0] truth [3, 3, -3, -0]: 3 of 4
    assert m["acc7"] == 0.75
    # mae is on unclipped values: (0.6 + 0.4 + 4.0 + 0.4) / 4
    assert m["mae"] == pytest.approx(5.4 / 4, abs=1e-6)


def test_zero_label_is_non_negative_in_has0_and_dropped_in_non0():
    truth = [0.0, 0.0, 1.0, -1.0]
    pred = [0.0, -0.1, 0.5, 0.2]
    m = regression_metrics(pred, truth)
    # has0: truth >= 0 [T,T,T,F], pred >= 0 [T,F,T,T]
    assert m["has0_acc2"] == 0.5
    # class T: support 3, predicted 3, TP 2 -> 2/3; class F: support 1, TP 0 -> 0 => 3*(2/3)/4
    assert m["has0_f1"] == pytest.approx(0.5)
    # non0 keeps samples 2, 3: truth > 0 [T,F], pred > 0 [T,T]
    assert m["non0_acc2"] == 0.5
    # class T: support 1, predicted 2, TP 1 -> 2/3; class F: 0 => (1*2/3)/2
    assert m["non0_f1"] == pytest.approx(1 / 3)


def test_pred_of_exactly_zero_is_negative_in_non0():
    # non0 compares pred > 0, so a prediction of 0 on a positive label is wrong
    m = regression_metrics([0.0, 0.0], [1.0, -1.0])
    assert m["non0_acc2"] == 0.5
    assert m["has0_acc2"] == 0.5  # pred 0 is non-negative: right on 1.0, wrong on -1.0


def test_non0_metrics_are_nan_when_every_label_is_zero():
    m = regression_metrics([0.2, -0.4], [0.0, 0.0])
    assert math.isnan(m["non0_acc2"]) and math.isnan(m["non0_f1"])
    assert m["has0_acc2"] == 0.5


def test_regression_accepts_column_vectors_numpy_and_bfloat16():
    pred = torch.tensor([[1.2], [-0.4], [0.0], [2.6]])
    truth = np.array([1.0, -1.0, 0.3, 3.0])
    ref = regression_metrics(pred.view(-1), truth)
    assert regression_metrics(pred, truth.reshape(-1, 1)) == ref
    assert regression_metrics(pred.bfloat16(), truth)["acc7"] == ref["acc7"]


@pytest.mark.parametrize("fn", [regression_metrics, sims_metrics])
def test_vector_metrics_reject_bad_input(fn):
    with pytest.raises(ValueError, match=r"same length, got 3 and 2"):
        fn(torch.zeros(3), torch.zeros(2))
    with pytest.raises(ValueError, match=r"pred must have shape \(N,\) or \(N, 1\), got \(3, 2\)"):
        fn(torch.zeros(3, 2), torch.zeros(3))
    with pytest.raises(ValueError, match="at least one sample"):
        fn(torch.zeros(0), torch.zeros(0))
    with pytest.raises(ValueError, match="pred contains 1 NaN/inf"):
        fn(torch.tensor([0.1, float("nan"), 0.3]), torch.zeros(3))
    with pytest.raises(ValueError, match="truth contains 1 NaN/inf"):
        fn(torch.zeros(3), torch.tensor([0.1, float("inf"), 0.3]))


# --------------------------------------------------------------------------- CH-SIMS


def test_sims_values_on_an_edge_fall_in_the_lower_bin():
    # each pred sits on an acc5 inner edge; each truth lies inside the bin just below it
    pred = torch.tensor([-0.7, -0.1, 0.1, 0.7])
    truth = torch.tensor([-0.8, -0.5, 0.0, 0.5])
    assert sims_metrics(pred, truth)["acc5"] == 1.0
    assert sims_metrics(pred + 1e-3, truth)["acc5"] == 0.0
    # acc3 edges -0.1, 0.1
    assert sims_metrics(torch.tensor([-0.1, 0.1]), torch.tensor([-0.5, 0.0]))["acc3"] == 1.0


def test_sims_zero_is_negative_in_acc2():
    m = sims_metrics([0.0, 0.0, 0.01], [-0.5, 0.4, 0.0])
    # bins: pred [0, 0, 1], truth [0, 1, 0]
    assert m["acc2"] == pytest.approx(1 / 3)
    # class 0: support 2, predicted 2, TP 1 -> 1/2; class 1: support 1, predicted 1, TP 0 -> 0
    assert m["f1"] == pytest.approx(2 * 0.5 / 3)


def test_sims_clips_to_unit_interval_for_all_metrics():
    m = sims_metrics([5.0, -3.0], [0.8, -1.0])
    assert m["acc5"] == 1.0 and m["acc3"] == 1.0 and m["acc2"] == 1.0
    assert m["mae"] == pytest.approx(0.1, abs=1e-6)  # |1 - 0.8| / 2 on clipped values
    assert set(m) == {"acc2", "acc3", "acc5", "f1", "mae", "corr"}


def test_sims_edges_are_compared_in_float32_for_float32_input():
    # float32(0.1) equals the float32 edge (lower bin, as in MMSA); the same number in float64 is above 0.1
    p32 = torch.tensor([0.1], dtype=torch.float32)
    assert sims_metrics(p32, torch.tensor([0.0]))["acc3"] == 1.0
    p64 = np.array([np.float32(0.1)], dtype=np.float64)
    assert sims_metrics(p64, np.array([0.0]))["acc3"] == 0.0


# --------------------------------------------------------------------------- IEMOCAP / classification


def _iemocap_example() -> tuple[torch.Tensor, torch.Tensor]:
    # neutral column: truth [0,1,1,0], pred [0,1,0,0]; others: all correct
    labels = torch.tensor([[0, 1, 0, 1], [1, 0, 1, 0], [1, 0, 0, 1], [0, 1, 1, 0]])
    pred = labels.clone()
    pred[2, 0] = 0
    logits = torch.nn.functional.one_hot(pred, 2).float() * 2.0 - 1.0  # (4, 4, 2)
    return logits, labels


def test_iemocap_binary_matches_hand_calculation():
    logits, labels = _iemocap_example()
    m = iemocap_binary_metrics(logits, labels)
    assert set(m) == {f"{e}_{s}" for e in EMOTIONS for s in ("acc", "f1")} | {"avg_acc", "avg_f1"}
    assert m["neutral_acc"] == 0.75
    # class 0: support 2, predicted 3, TP 2 -> 4/5; class 1: support 2, predicted 1, TP 1 -> 2/3
    assert m["neutral_f1"] == pytest.approx((2 * 0.8 + 2 * 2 / 3) / 4)
    assert m["happy_acc"] == m["sad_acc"] == m["angry_acc"] == 1.0
    assert m["avg_acc"] == pytest.approx((0.75 + 3) / 4)
    assert m["avg_f1"] == pytest.approx((m["neutral_f1"] + 3) / 4)


def test_iemocap_flat_logits_read_emotion_major():
    logits, labels = _iemocap_example()
    assert iemocap_binary_metrics(logits.reshape(4, 8), labels) == iemocap_binary_metrics(logits, labels)


def test_argmax_ties_pick_the_first_class():
    m = iemocap_binary_metrics(torch.zeros(2, 4, 2), torch.zeros(2, 4, dtype=torch.long))
    assert m["avg_acc"] == 1.0
    assert classification_metrics(torch.zeros(2, 3), torch.tensor([0, 0]))["acc"] == 1.0


def test_iemocap_rejects_bad_input():
    logits, labels = _iemocap_example()
    with pytest.raises(ValueError, match=r"logits must have shape \(N, 4, 2\) or \(N, 8\), got \(4, 4, 3\)"):
        iemocap_binary_metrics(torch.zeros(4, 4, 3), labels)
    with pytest.raises(ValueError, match=r"labels must have shape \(N, 4\), got \(4,\)"):
        iemocap_binary_metrics(logits, labels[:, 0])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\], got values in \[0, 2\]"):
        iemocap_binary_metrics(logits, labels * 2)
    with pytest.raises(ValueError, match="same N, got 4 and 3"):
        iemocap_binary_metrics(logits, labels[:3])
    bad = logits.clone()
    bad[1, 2, 0] = float("nan")
    with pytest.raises(ValueError, match="logits contains 1 NaN"):
        iemocap_binary_metrics(bad, labels)


def test_classification_matches_hand_calculation():
    logits = torch.eye(4)[[0, 0, 1, 2, 2, 3]]
    labels = torch.tensor([0, 1, 1, 2, 3, 3])
    m = classification_metrics(logits, labels)
    assert m["acc"] == pytest.approx(4 / 6)
    # c0: s1 p2 tp1 -> 2/3; c1: s2 p1 tp1 -> 2/3; c2: s1 p2 tp1 -> 2/3; c3: s2 p1 tp1 -> 2/3
    assert m["f1"] == pytest.approx(2 / 3)


def test_classification_rejects_bad_input():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\], got values in \[0, 3\]"):
        classification_metrics(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="non-integer"):
        classification_metrics(torch.zeros(2, 3), torch.tensor([0.0, 1.5]))
    with pytest.raises(ValueError, match=r"logits must have shape \(N, C\) with C >= 2, got \(2,\)"):
        classification_metrics(torch.zeros(2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="at least one sample"):
        classification_metrics(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))


# --------------------------------------------------------------------------- Metric classes


def _batches(kind: str, gen: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    out = []
    for n in (5, 1, 7):
        if kind in ("mosi", "sims"):
            truth = torch.randint(-6, 7, (n,), generator=gen).float() / 2  # halves and zeros
            out.append((truth + torch.randn(n, generator=gen), truth.unsqueeze(1)))
        elif kind == "iemocap_binary":
            out.append((torch.randn(n, 8, generator=gen), torch.randint(0, 2, (n, 4), generator=gen)))
        else:
            out.append((torch.randn(n, 3, generator=gen), torch.randint(0, 3, (n,), generator=gen)))
    return out


FUNCTIONS = {"mosi": regression_metrics, "sims": sims_metrics,
             "iemocap_binary": iemocap_binary_metrics, "classification": classification_metrics}


@pytest.mark.parametrize("kind", list(FUNCTIONS))
def test_metric_over_batches_equals_function_on_concatenation(kind):
    batches = _batches(kind, torch.Generator().manual_seed(3))
    metric = metrics_for(kind)
    for preds, target in batches:
        metric.update(preds, target)
    expected = FUNCTIONS[kind](torch.cat([p for p, _ in batches]), torch.cat([t for _, t in batches]))
    got = metric.compute()
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == pytest.approx(expected[key], nan_ok=True), key
    key, _ = primary_metric(kind)
    assert key in got
    metric.reset()
    with pytest.warns(UserWarning, match="called before the ``update``"):  # torchmetrics' own warning
        with pytest.raises(RuntimeError, match="before any update"):
            metric.compute()


@pytest.mark.parametrize("kind", list(FUNCTIONS))
def test_merged_metric_states_equal_one_metric_over_all_batches(kind):
    batches = _batches(kind, torch.Generator().manual_seed(4))
    first, second, whole = metrics_for(kind), metrics_for(kind), metrics_for(kind)
    first.update(*batches[0])
    for b in batches[1:]:
        second.update(*b)
    for b in batches:
        whole.update(*b)
    first.merge_state(second)
    assert first.compute() == pytest.approx(whole.compute(), nan_ok=True)


def test_metric_update_rejects_bad_shapes_where_they_enter():
    with pytest.raises(ValueError, match="same length, got 3 and 2"):
        RegressionMetrics().update(torch.zeros(3), torch.zeros(2))
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        IemocapBinaryMetrics().update(torch.zeros(3, 8), torch.zeros(3, 2))
    metric = ClassificationMetrics()
    metric.update(torch.zeros(2, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"does not match earlier batches \(N, 3\)"):
        metric.update(torch.zeros(2, 4), torch.tensor([0, 1]))
    sims = SimsMetrics()
    sims.update(torch.tensor([float("nan")]), torch.zeros(1))
    with pytest.raises(ValueError, match="pred contains 1 NaN"):
        sims.compute()


def test_kinds_and_primary_metrics():
    assert set(KINDS) >= {"mosi", "sims", "iemocap_binary", "classification"}
    assert type(metrics_for("mosi")) is RegressionMetrics
    assert type(metrics_for("mosei")) is RegressionMetrics
    assert type(metrics_for("iemocap_binary")) is IemocapBinaryMetrics
    assert primary_metric("mosi") == ("mae", False)
    assert primary_metric("sims") == ("mae", False)
    assert primary_metric("iemocap_binary") == ("avg_acc", True)
    assert primary_metric("classification") == ("acc", True)
    with pytest.raises(ValueError, match="unknown task kind 'mosix'; expected one of mosi"):
        metrics_for("mosix")
    with pytest.raises(ValueError, match="unknown task kind"):
        primary_metric("regression")
