"""Emotion recognition end to end: IEMOCAP's four binary tasks (loss, metrics, paired per-sample
correctness), and the IEMOCAP / CH-SIMS recipes from the shipped MOSEI-like backbone and from users' files."""

from __future__ import annotations

import math
import pickle
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

import backbones
from promptkit.backbone_files import save_backbone
from promptkit.evaluation.paired import per_sample_correct
from promptkit.experiment.pipeline import run_pipeline
from promptkit.metrics import iemocap_binary_metrics
from promptkit.recipes import from_dict, load_recipe_data
from promptkit.train.losses import task_loss

ROOT = Path(__file__).resolve().parents[1]
LABELS = torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])  # neutral, happy, sad, angry
PREDICTED = torch.tensor([[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 1], [1, 0, 0, 1]])  # 3 of 16 decisions wrong


def _logits(pred: torch.Tensor) -> torch.Tensor:
    """(N, 8) logits, emotion-major: (2, 0) for 'no', (0, 2) for 'yes'."""
    return torch.stack([2.0 * (1 - pred), 2.0 * pred], -1).float().reshape(len(pred), 8)


def test_iemocap_metrics_against_hand_computed_values():
    m = iemocap_binary_metrics(_logits(PREDICTED), LABELS)
    # neutral: truth 1000, pred 1001: acc 3/4; F1_0 = 2*2/(3+2), F1_1 = 2*1/(1+2), weighted by support 3:1
    assert m["neutral_acc"] == 0.75 and m["neutral_f1"] == pytest.approx((3 * 0.8 + 2 / 3) / 4)
    # happy: truth 0100, pred 0000: F1_0 = 6/7, F1_1 = 0
    assert m["happy_acc"] == 0.75 and m["happy_f1"] == pytest.approx(3 * 6 / 7 / 4)
    assert m["sad_acc"] == 1.0 and m["sad_f1"] == 1.0
    assert m["angry_acc"] == 0.75 and m["angry_f1"] == pytest.approx((3 * 0.8 + 2 / 3) / 4)
    assert m["avg_acc"] == pytest.approx(0.8125)
    assert m["avg_f1"] == pytest.approx((2 * (3 * 0.8 + 2 / 3) / 4 + 3 * 6 / 7 / 4 + 1) / 4)


def test_four_binary_tasks_loss_is_the_mean_cross_entropy_over_decisions():
    loss = task_loss(_logits(PREDICTED), LABELS, "classification")
    want = (13 * math.log1p(math.exp(-2)) + 3 * math.log1p(math.exp(2))) / 16
    assert loss.item() == pytest.approx(want, rel=1e-6)


def test_paired_correctness_per_emotion_and_on_average():
    correct, scored = per_sample_correct("iemocap_binary", "happy_acc", _logits(PREDICTED), LABELS)
    assert correct.tolist() == [1, 0, 1, 1] and scored.all()
    correct, _ = per_sample_correct("iemocap_binary", "avg_acc", _logits(PREDICTED), LABELS)
    assert correct.tolist() == [1.0, 0.75, 0.75, 0.75]  # its mean is avg_acc


def _tiny(path: Path, **data) -> dict:
    """A shipped recipe at test size: 1 epoch, two methods, small splits."""
    raw = tomllib.loads(path.read_text())
    raw["prompt"].update(epochs=1, batch_size=16, methods=["mplmm", "head_only"])
    raw["eval"] = {"missing_rates": [0.5], "seed": 0}
    raw["data"].update(data)
    return raw


@pytest.mark.parametrize("world,acc", [("iemocap", "avg_acc"), ("sims", "acc2")])
def test_synthetic_recipes_run_from_the_shipped_source_backbone(world, acc, tmp_path):
    path = ROOT / "recipes" / f"mult-synth-{world}.toml"
    raw = _tiny(path, sizes={"train": 32, "valid": 16, "test": 16})
    raw["data"]["synthetic"]["seq_lens"] = {"text": 3, "audio": 3, "vision": 3}
    recipe = from_dict(raw, source=str(path))
    summary = run_pipeline(recipe, load_recipe_data(recipe), tmp_path / "run", progress=False)
    assert summary["metric"] == acc and "transfer" in summary["backbone"]
    complete = summary["results"]["mplmm"]["cases"]["complete"]
    keys = {"neutral_acc", "happy_f1", "avg_acc", "avg_f1"} if world == "iemocap" else {"acc2", "f1", "mae", "corr"}
    assert keys <= set(complete)
    assert set(summary["paired"]["mplmm_vs_head_only"]) >= {"avg", "complete"}
    if world == "iemocap":  # each emotion's binary accuracy paired per sample too
        per = summary["paired_tasks"]
        assert set(per) == {"neutral_acc", "happy_acc", "sad_acc", "angry_acc"}
        d = per["happy_acc"]["mplmm_vs_head_only"]["complete"]
        got = complete["happy_acc"] - summary["results"]["head_only"]["cases"]["complete"]["happy_acc"]
        assert d["mean"] == pytest.approx(100 * got, abs=1e-6)
    else:
        assert "paired_tasks" not in summary


def _source(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = backbones.create_backbone("mult", feature_dims={"text": 300, "audio": 5, "vision": 20}, d_model=10,
                                      num_heads=2, layers=1)
    return save_backbone(model, tmp_path / "mosei.safetensors", "mult")


def _mmin_h5(path: Path) -> Path:
    """An MMIN-style h5: a group per split, A/V/L datasets (N, T, D) and labels (N, 4) 0/1 per emotion."""
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        for split, n in (("train", 32), ("valid", 16), ("test", 16)):
            g = f.create_group(split)
            for name, (t, d) in (("A", (4, 130)), ("V", (3, 342)), ("L", (5, 1024))):
                g.create_dataset(name, data=rng.standard_normal((n, t, d)).astype(np.float32))
            g.create_dataset("label", data=np.eye(4, dtype=np.int64)[np.arange(n) % 4])
    return path


def _mmsa_pickle(path: Path) -> Path:
    """An MMSA CH-SIMS pickle: text 768 / audio 33 / vision 709, regression labels in [-1, 1]."""
    rng = np.random.default_rng(0)
    obj = {split: {"text": rng.standard_normal((n, 5, 768)).astype(np.float32),
                   "audio": rng.standard_normal((n, 6, 33)).astype(np.float32),
                   "vision": rng.standard_normal((n, 4, 709)).astype(np.float32),
                   "regression_labels": rng.uniform(-1, 1, n).astype(np.float32),
                   "id": [f"clip_{i}" for i in range(n)]}
           for split, n in (("train", 32), ("valid", 16), ("test", 16))}
    path.write_bytes(pickle.dumps(obj, protocol=4))
    return path


@pytest.mark.parametrize("name,fixture,acc", [("mult-iemocap", _mmin_h5, "avg_acc"), ("mult-sims", _mmsa_pickle, "acc2")])
def test_file_templates_run_end_to_end(name, fixture, acc, tmp_path):
    path = ROOT / "recipes" / f"{name}.toml"
    raw = _tiny(path)
    raw["backbone"]["config"].update(d_model=10, num_heads=2, layers=1)
    raw["pretrain"]["checkpoint"] = str(_source(tmp_path))  # a MOSEI-shaped MulT (300 / 5 / 20)
    recipe = from_dict(raw, source=str(path))
    data_file = fixture(tmp_path / ("iemocap.h5" if "iemocap" in name else "sims.pkl"))
    data = load_recipe_data(recipe, data_file)
    summary = run_pipeline(recipe, data, tmp_path / "run", progress=False, data_path=data_file)
    assert summary["metric"] == acc
    assert summary["results"]["head_only"]["cases"]["complete"][acc] >= 0


@pytest.mark.slow
def test_table1_has_the_iemocap_and_sims_columns(tmp_path):
    from benchmarks import table1

    argv = ["--quick", "--datasets", "iemocap", "sims", "--seeds", "0", "--jobs", "1", "--methods", "lb", "mctn",
            "mplmm", "--out", str(tmp_path), "--work", str(tmp_path / "work"), "--quiet"]
    payload = table1.main(argv)
    assert "backbones" not in payload  # no MOSI column asked for
    for dataset, metric, paper in (("iemocap", "avg_acc", "IEMOCAP"), ("sims", "acc2", "CH-SIMS")):
        entry = payload["datasets"][dataset]
        assert entry["metric"] == metric and f"world={dataset}" in entry["data"] and paper in entry["paper"]["source"]
        summary = entry["backbones"]["mult"]
        assert list(summary) == ["lb", "mctn", "mplmm"]
        assert summary["mplmm"]["paper_row"] == "Ours" and 0 <= summary["mplmm"]["cases"]["avg"]["acc"]["mean"] <= 100
        assert (tmp_path / f"table1-{dataset}.csv").is_file() and (tmp_path / f"table1-{dataset}.png").is_file()
    assert set(payload["datasets"]["iemocap"]["backbones"]["mult"]["mplmm"]["rates"]["0.5"]) == {"acc", "f1"}
