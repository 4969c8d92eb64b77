"""Experiment tracking through accelerate's trackers: a CSV a person can follow while a run trains,
TensorBoard event files, off by default, errors that say what to install."""

from __future__ import annotations

import csv

import pytest
import torch

from backbones import create_backbone
from promptkit.data import make_synthetic_mosi
from promptkit.recipes import RecipeError, StageSection, from_dict
from promptkit.trackers import check_log_with
from promptkit.train import fit

SEQ = {"text": 4, "audio": 4, "vision": 4}


@pytest.fixture(scope="module")
def data():
    return make_synthetic_mosi(sizes=(32, 16, 16), seq_lens=SEQ)


def _model(data):
    torch.manual_seed(0)
    return create_backbone("mult", feature_dims=dict(data.feature_dims), d_model=8, num_heads=2, layers=1)


def test_csv_and_tensorboard_get_every_step_and_every_epoch(data, tmp_path):
    stage = StageSection(epochs=2, batch_size=16, log_with=["csv", "tensorboard"])
    fit(_model(data), data, stage, tmp_path, progress=False, evaluate_test=False)
    rows = list(csv.DictReader((tmp_path / "logs" / tmp_path.name / "metrics.csv").open()))
    steps = [r for r in rows if r["name"] == "train/loss"]
    assert [int(r["step"]) for r in steps] == [1, 2, 3, 4]  # 2 steps per epoch, numbered across epochs
    assert {r["name"] for r in rows} >= {"train/lr", "epoch/train_loss", "epoch/valid_loss", "valid/mae"}
    assert [int(r["step"]) for r in rows if r["name"] == "valid/mae"] == [1, 2]
    assert list((tmp_path / "logs").rglob("events.out.tfevents.*"))


def test_tracking_is_off_by_default(data, tmp_path):
    fit(_model(data), data, StageSection(epochs=1, batch_size=16), tmp_path, progress=False, evaluate_test=False)
    assert not (tmp_path / "logs").exists()


def test_unknown_or_uninstalled_trackers_are_named(monkeypatch):
    with pytest.raises(ValueError, match="unknown tracker 'tensorbored'"):
        check_log_with(["tensorbored"])
    with pytest.raises(RecipeError, match=r"\[prompt\] log_with: unknown tracker 'cvs'"):
        from_dict({"prompt": {"log_with": ["cvs"]}})
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ValueError, match="tracker 'wandb' needs the 'wandb' package: pip install wandb"):
        check_log_with(["wandb"])
