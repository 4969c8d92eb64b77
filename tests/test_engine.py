"""The generic fit loop: loss goes down, resume equals an uninterrupted run, NaN stops cleanly,
a directory holding another run is refused, only the given params train, plug-in hooks order."""

from __future__ import annotations

import csv
import dataclasses
import json

import pytest
import torch
from torch import nn

from backbones import MSABackbone
from promptkit.checkpoint import load_checkpoint
from promptkit.data import make_synthetic_mosi
from promptkit.plugins import TrainPlugin
from promptkit.recipes import StageSection
from promptkit.train import FitResult, NonFiniteLossError, RunDirError, fit, task_loss

DIMS = {"text": 6, "audio": 3, "vision": 4}


class ToyBackbone(MSABackbone):
    """Mean over time per modality → Linear → dropout → concat → head ``(B, out_dim)``."""

    def __init__(self, feature_dims=DIMS, out_dim=1, task="regression", width=8, dropout=0.2):
        super().__init__(feature_dims, out_dim, task)
        self.enc = nn.ModuleDict({m: nn.Linear(d, width) for m, d in feature_dims.items()})
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(width * len(feature_dims), out_dim)

    def forward(self, **features):
        self.check_features(features)
        h = [torch.relu(self.enc[m](features[m].mean(1))) for m in self.modalities]
        return self.head(self.drop(torch.cat(h, -1)))


@pytest.fixture(scope="module")
def data():
    return make_synthetic_mosi(seed=0, sizes=(96, 32, 32), seq_lens={"text": 4, "audio": 4, "vision": 4},
                               feature_dims=DIMS)


def stage(**kw) -> StageSection:
    base = dict(epochs=2, batch_size=16, lr=1e-2, scheduler="plateau", grad_clip=0.8, seed=3)
    return StageSection(**{**base, **kw})


def model(seed: int = 0) -> ToyBackbone:
    torch.manual_seed(seed)
    return ToyBackbone()


def test_two_epochs_lower_training_loss_and_write_results(data, tmp_path):
    res = fit(model(), data, stage(epochs=3), tmp_path, progress=False)
    assert isinstance(res, FitResult)
    losses = [h["train_loss"] for h in res.history]
    assert losses[-1] < losses[0]
    assert set(res.test) >= {"mae", "corr", "non0_acc2", "loss"} and res.primary == "mae"
    assert 1 <= res.best_epoch <= 3
    assert res.best_valid["mae"] == min(h["valid"]["mae"] for h in res.history)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["split"] == "test" and saved["test"] == pytest.approx(res.test)
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "test"]
    _, meta = load_checkpoint(tmp_path / "best.safetensors", kind="weights")
    assert meta["epoch"] == res.best_epoch


def test_final_report_is_test_split_with_best_weights(data, tmp_path):
    res = fit(model(), data, stage(epochs=2), tmp_path, progress=False)
    best, _ = load_checkpoint(tmp_path / "best.safetensors")
    m = model(5)
    m.load_state_dict(best)
    from promptkit.train import evaluate

    again = evaluate(m, data.splits["test"], task="regression", modalities=data.modalities, metric_kind="mosi")
    assert again == pytest.approx(res.test)
    valid = evaluate(m, data.splits["valid"], task="regression", modalities=data.modalities, metric_kind="mosi")
    assert valid == pytest.approx(res.best_valid) and valid["mae"] != pytest.approx(res.test["mae"])


class CountingPlugin(TrainPlugin):
    """Stateful: its extra loss depends on a step counter kept in its checkpoint state."""

    def __init__(self):
        self.steps = torch.zeros((), dtype=torch.long)

    def extra_loss(self, model, batch, preds, labels):
        self.steps += 1
        return 1e-3 * float(self.steps % 7) * preds.mean() ** 2

    def on_epoch_end(self, epoch):
        return {"count/steps": float(self.steps)}

    def state_dict(self):
        return {"steps": self.steps.clone()}, {"note": "ok"}

    def load_state_dict(self, tensors, meta):
        assert meta == {"note": "ok"}
        self.steps = tensors["steps"].clone()


def test_resume_after_crash_equals_uninterrupted_run(data, tmp_path):
    straight = fit(model(), data, stage(epochs=3), tmp_path / "a", plugins=[CountingPlugin()], progress=False)

    calls = {"n": 0}

    def crashing(m, batch):
        calls["n"] += 1
        if calls["n"] == 6 + 3:  # epoch 1 has 6 steps; crash inside epoch 2
            raise KeyboardInterrupt("killed")
        return m(**{k: batch[k] for k in DIMS})

    with pytest.raises(KeyboardInterrupt):
        fit(model(), data, stage(epochs=3), tmp_path / "b", forward=crashing, plugins=[CountingPlugin()], progress=False)
    _, meta = load_checkpoint(tmp_path / "b" / "last.safetensors")
    assert meta["state"]["epoch"] == 1
    resumed = fit(model(7), data, stage(epochs=3), tmp_path / "b", plugins=[CountingPlugin()], resume=True,
                  progress=False)

    assert resumed.test == straight.test
    assert resumed.best_epoch == straight.best_epoch
    timings = ("seconds", "valid_seconds")
    drop_time = [{k: v for k, v in h.items() if k not in timings} for h in straight.history]
    assert [{k: v for k, v in h.items() if k not in timings} for h in resumed.history] == drop_time
    a, _ = load_checkpoint(tmp_path / "a" / "last.safetensors")
    b, _ = load_checkpoint(tmp_path / "b" / "last.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_of_finished_run_only_reports(data, tmp_path):
    first = fit(model(), data, stage(epochs=2), tmp_path, progress=False)
    again = fit(model(9), data, stage(epochs=2), tmp_path, resume=True, progress=False)
    assert again.test == first.test and len(again.history) == 2


def test_nan_loss_names_epoch_step_and_keeps_last_checkpoint(data, tmp_path):
    seen = {}

    def nan_in_epoch_2(m, batch):
        preds = m(**{k: batch[k] for k in DIMS})
        if m.training and (tmp_path / "last.safetensors").exists():
            seen["bytes"] = (tmp_path / "last.safetensors").read_bytes()
            seen["index"] = batch["index"].tolist()
            return preds * float("nan")
        return preds

    with pytest.raises(NonFiniteLossError) as e:
        fit(model(), data, stage(epochs=3), tmp_path, forward=nan_in_epoch_2, progress=False)
    msg = str(e.value)
    assert "epoch 2, step 1/6" in msg and str(seen["index"]) in msg and "last.safetensors (epoch 1)" in msg
    assert (tmp_path / "last.safetensors").read_bytes() == seen["bytes"]
    _, meta = load_checkpoint(tmp_path / "last.safetensors", kind="train-state")
    assert meta["state"]["epoch"] == 1


def test_out_dir_holding_another_run_is_refused(data, tmp_path):
    fit(model(), data, stage(epochs=1), tmp_path, progress=False)
    for resume in (False, True):
        with pytest.raises(RunDirError, match=r"different run \(settings differ in: stage\.lr\)"):
            fit(model(), data, stage(epochs=1, lr=5e-3), tmp_path, resume=resume, progress=False)
    with pytest.raises(RunDirError, match="already holds this run.*resume"):
        fit(model(), data, stage(epochs=1), tmp_path, progress=False)
    with pytest.raises(ValueError, match="resume and overwrite exclude each other"):
        fit(model(), data, stage(epochs=1), tmp_path, resume=True, overwrite=True, progress=False)
    res = fit(model(), data, stage(epochs=1, lr=5e-3), tmp_path, overwrite=True, progress=False)
    assert json.loads((tmp_path / "run.json").read_text())["identity"]["stage"]["lr"] == 5e-3
    assert len(res.history) == 1


def test_a_run_that_failed_in_its_first_epoch_leaves_the_directory_free(data, tmp_path):
    def broken(m, batch):
        raise RuntimeError("bug in forward")

    with pytest.raises(RuntimeError, match="bug in forward"):
        fit(model(), data, stage(epochs=1), tmp_path, forward=broken, progress=False)
    assert (tmp_path / "run.json").exists() and not (tmp_path / "last.safetensors").exists()
    assert len(fit(model(), data, stage(epochs=1, lr=2e-3), tmp_path, progress=False).history) == 1


def test_resume_may_extend_epochs(data, tmp_path):
    fit(model(), data, stage(epochs=1), tmp_path, progress=False)
    res = fit(model(), data, stage(epochs=2), tmp_path, resume=True, progress=False)
    assert [h["epoch"] for h in res.history] == [1, 2]


def test_only_given_params_train_and_optimizer_holds_only_them(data, tmp_path):
    m = model()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    fit(m, data, stage(epochs=1), tmp_path, params=list(m.head.parameters()), progress=False)
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]) != k.startswith("head."), k
    tensors, meta = load_checkpoint(tmp_path / "last.safetensors")
    assert sorted(k for k in tensors if k.startswith("model.")) == ["model.head.bias", "model.head.weight"]
    assert len(meta["optimizer"]["param_groups"][0]["params"]) == 2


def test_frozen_param_in_params_is_an_error(data, tmp_path):
    m = model()
    m.head.weight.requires_grad_(False)
    with pytest.raises(ValueError, match=r"head.weight.*requires_grad=False"):
        fit(m, data, stage(), tmp_path, params=[m.head.weight], progress=False)


class GradProbe(TrainPlugin):
    def __init__(self):
        self.norms = []

    def after_backward(self, model):
        self.norms.append(torch.cat([p.grad.flatten() for p in model.parameters()]).norm().item())
        for p in model.parameters():
            p.grad.mul_(100.0)  # a plug-in's scaling happens before clipping


def test_after_backward_runs_before_clipping(data, tmp_path):
    probe = GradProbe()
    m = model()
    w0 = m.head.weight.detach().clone()
    fit(m, data, stage(epochs=1, batch_size=96, lr=1e-3, grad_clip=1e-6, scheduler="none", optimizer="adamw"),
        tmp_path, plugins=[probe], progress=False)
    assert len(probe.norms) == 1 and probe.norms[0] > 0
    assert not torch.equal(m.head.weight, w0)


def test_mask_fn_masks_reach_forward_and_change_per_epoch(data, tmp_path):
    from promptkit.modalities import ModalitySet

    ms = ModalitySet(data.modalities)
    seen = []

    def masked_forward(m, batch):
        if m.training:
            seen.append(batch["mask"].clone())
        keep = {k: batch[k] * batch["mask"][:, i, None, None] for i, k in enumerate(DIMS)}
        return m(**keep)

    def mask_fn(batch, epoch, gen):
        return ms.sample_masks(batch["labels"].shape[0], 0.7, gen)

    fit(model(), data, stage(epochs=2, batch_size=96), tmp_path, forward=masked_forward, mask_fn=mask_fn,
        progress=False)
    assert len(seen) == 2 and not seen[0].all() and not torch.equal(seen[0], seen[1])


def test_task_loss_for_four_binary_tasks_and_shape_errors():
    logits = torch.zeros(5, 8)
    logits[:, 1::2] = 3.0  # every task predicts class 1
    labels = torch.ones(5, 4, dtype=torch.long)
    assert task_loss(logits, labels, "classification") < 0.1
    assert task_loss(logits, 1 - labels, "classification") > 2.0
    assert task_loss(torch.zeros(3, 1), torch.tensor([1.0, -1.0, 2.0]), "regression") == pytest.approx(4 / 3)
    with pytest.raises(ValueError, match=r"regression needs preds \(B, 1\)"):
        task_loss(torch.zeros(3, 2), torch.zeros(3), "regression")
    with pytest.raises(ValueError, match="3 classification tasks"):
        task_loss(torch.zeros(3, 8), torch.zeros(3, 3, dtype=torch.long), "classification")


def test_stage_is_any_dataclass_and_bad_device_is_an_error(data, tmp_path):
    s = dataclasses.replace(stage(), epochs=1)
    with pytest.raises(ValueError, match="device 'tpu' is not a torch device|not supported"):
        fit(model(), data, s, tmp_path, device="tpu", progress=False)


@pytest.fixture
def _dynamo_reset():
    yield
    torch._dynamo.reset()


def test_compiled_stage_trains_like_eager_and_keeps_state_keys_and_run_identity(data, tmp_path, _dynamo_reset):
    """``compile = "eager"``: TorchDynamo traces the model (no code generation, fast)."""
    from promptkit.compile import is_compiled

    plain, compiled = model(), model()
    keys = list(plain.state_dict())
    eager = fit(plain, data, stage(epochs=1), tmp_path / "eager", progress=False)
    res = fit(compiled, data, stage(epochs=1, compile="eager"), tmp_path / "compiled", progress=False)
    assert is_compiled(compiled) and not is_compiled(plain)
    assert list(compiled.state_dict()) == keys  # no "_orig_mod." prefix
    for name in ("last.safetensors", "best.safetensors"):
        a, _ = load_checkpoint(tmp_path / "eager" / name)
        b, _ = load_checkpoint(tmp_path / "compiled" / name)
        assert sorted(a) == sorted(b), name
    assert res.history[0]["train_loss"] == pytest.approx(eager.history[0]["train_loss"], rel=1e-5)
    assert res.test == pytest.approx(eager.test, rel=1e-5)
    hashes = [json.loads((tmp_path / d / "run.json").read_text())["hash"] for d in ("eager", "compiled")]
    assert hashes[0] == hashes[1]  # compile is not part of the run's identity: it may change on resume
    resumed = fit(model(), data, stage(epochs=2), tmp_path / "compiled", resume=True, progress=False)
    assert [h["epoch"] for h in resumed.history] == [1, 2]


def test_unavailable_compile_backend_is_refused_before_anything_is_written(data, tmp_path, monkeypatch):
    import promptkit.compile as pc

    monkeypatch.setattr(pc.shutil, "which", lambda _: None)
    m = model()
    with pytest.raises(RuntimeError, match=r"compile = true, backend 'inductor'.*no C\+\+ compiler.*compile = false"):
        fit(m, data, stage(epochs=1, compile=True), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists() and not pc.is_compiled(m)
