"""Resume reaches the uninterrupted result for every shipped backbone (state outside parameters
included), a longer cosine schedule is rebuilt on resume, and one run directory has one writer."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from backbones import create_backbone
from promptkit.checkpoint import load_checkpoint
from promptkit.data import make_synthetic_mosi
from promptkit.recipes import StageSection
from promptkit.train import RunDirError, fit

SEQ = {"text": 4, "audio": 5, "vision": 6}
SMALL = {
    "mult": {"d_model": 8, "num_heads": 2, "layers": 1},
    "misa": {"hidden_size": 8},
    "mmim": {"text_dim": 8, "rnn_out": 4},
    "unimse": {},
}


@pytest.fixture(scope="module")
def data():
    return make_synthetic_mosi(sizes=(48, 16, 16), seq_lens=SEQ)


def _model(name, data):
    torch.manual_seed(0)
    return create_backbone(name, feature_dims=dict(data.feature_dims), out_dim=1, task="regression", **SMALL[name])


def _stage(**kw):
    return StageSection(**{"epochs": 2, "batch_size": 16, "lr": 1e-3, "seed": 1, **kw})


class Crash(Exception):
    pass


@pytest.mark.parametrize("name", sorted(SMALL))
def test_resume_after_a_kill_equals_the_uninterrupted_run_for_every_backbone(name, data, tmp_path):
    """MMIM kept its entropy memory outside parameters and buffers: a resumed run trained on."""
    fit(_model(name, data), data, _stage(), tmp_path / "a", progress=False, evaluate_test=False)
    calls = {"n": 0}

    def crash_in_epoch_two(model, batch):
        calls["n"] += 1
        if calls["n"] == 3 + 1:  # 3 steps per epoch, then the first step of epoch 2
            raise Crash
        return model(**{m: batch[m] for m in data.modalities})

    with pytest.raises(Crash):
        fit(_model(name, data), data, _stage(), tmp_path / "b", forward=crash_in_epoch_two, progress=False)
    fit(_model(name, data), data, _stage(), tmp_path / "b", resume=True, progress=False, evaluate_test=False)
    a, _ = load_checkpoint(tmp_path / "a" / "last.safetensors")
    b, _ = load_checkpoint(tmp_path / "b" / "last.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    if name == "mmim":
        assert any(k.startswith("runtime.") for k in a)  # the memory is in the checkpoint


def test_extending_epochs_on_resume_rebuilds_the_cosine_schedule(data, tmp_path):
    """The old schedule was restored: the added epochs trained at the old schedule's final lr (0)."""
    fit(_model("mult", data), data, _stage(scheduler="cosine", lr=1e-2), tmp_path, progress=False,
        evaluate_test=False)
    res = fit(_model("mult", data), data, _stage(scheduler="cosine", lr=1e-2, epochs=4), tmp_path, resume=True,
              progress=False, evaluate_test=False)
    four = fit(_model("mult", data), data, _stage(scheduler="cosine", lr=1e-2, epochs=4), tmp_path / "four",
               progress=False, evaluate_test=False)
    lrs, want = [h["lr"] for h in res.history], [h["lr"] for h in four.history]
    assert lrs[2:] == pytest.approx(want[2:])  # the added epochs follow the 4-epoch schedule
    assert lrs[2] > 0 and lrs[2] != pytest.approx(lrs[1])


def test_a_second_writer_into_a_locked_run_directory_is_refused_naming_the_pid(data, tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from promptkit.train.run_dir import lock_run_dir
            lock = lock_run_dir({str(tmp_path)!r})
            print("locked", flush=True)
            time.sleep(60)
        """)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirError, match=f"in use by another run \\(pid {holder.pid}\\)"):
            fit(_model("mult", data), data, _stage(epochs=1), tmp_path, progress=False)
        assert not (tmp_path / "run.json").exists()  # refused before anything was written
    finally:
        holder.kill()
        holder.wait()
    fit(_model("mult", data), data, _stage(epochs=1), tmp_path, progress=False, evaluate_test=False)  # free again


def test_stray_temporary_files_of_a_crashed_writer_are_removed(data, tmp_path):
    tmp_path.mkdir(exist_ok=True)
    stray = tmp_path / ".last.safetensors.abc123.tmp"
    stray.write_bytes(b"half a file")
    fit(_model("mult", data), data, _stage(epochs=1), tmp_path, progress=False, evaluate_test=False)
    assert not stray.exists()


TINY = {
    "backbone": {"name": "mult", "config": {"d_model": 8, "num_heads": 2, "layers": 1}},
    "data": {"source": "synthetic", "seed": 3, "sizes": {"train": 48, "valid": 16, "test": 16},
             "synthetic": {"seq_lens": SEQ}},
    "pretrain": {"epochs": 1, "batch_size": 16, "seed": 1},
    "prompt": {"epochs": 2, "batch_size": 16, "seed": 2, "prompter": {"prompt_length": 3}},
    "eval": {"missing_rates": [0.5], "seed": 5},
}


def _pipeline(raw, out, **kw):
    from promptkit.recipes import from_dict, load_recipe_data
    from promptkit.experiment.pipeline import run_pipeline

    recipe = from_dict(raw)
    return run_pipeline(recipe, load_recipe_data(recipe), out, progress=False, device="cpu", **kw)


def test_a_kill_between_pretraining_and_the_first_prompt_checkpoint_resumes_to_the_same_result(tmp_path, monkeypatch):
    """The prompt init once drew from the global RNG, which pretraining had advanced: 0.7797 -> 0.7966."""
    straight = _pipeline(TINY, tmp_path / "a")
    def killed(*args, **kwargs):
        raise Crash  # after the pretrain stage finished, before any prompt-stage checkpoint

    with monkeypatch.context() as m:
        m.setattr("promptkit.methods._prompter_fit.prompt_tune", killed)  # the prompt stage of every prompter method
        with pytest.raises(Crash):
            _pipeline(TINY, tmp_path / "b")
    torch.manual_seed(999)  # a fresh process: whatever state the global RNG is in
    resumed = _pipeline(TINY, tmp_path / "b", resume=True)
    assert resumed["results"] == straight["results"]


def test_resume_after_the_pretrain_budget_changed_refuses_the_old_adapter(tmp_path):
    _pipeline(TINY, tmp_path)
    longer = {**TINY, "pretrain": {**TINY["pretrain"], "epochs": 2}}  # epochs may change on resume
    with pytest.raises(RunDirError, match="pre-trained backbone changed since this stage ran"):
        _pipeline(longer, tmp_path, resume=True)


def test_two_pipelines_into_one_directory_are_refused(tmp_path):
    from promptkit.train.run_dir import lock_run_dir

    with lock_run_dir(tmp_path):  # another `promptkit run` holds it (flock is per open file, so this process too)
        with pytest.raises(RunDirError, match="in use by another run"):
            _pipeline(TINY, tmp_path)


def test_a_torn_adapter_write_leaves_no_temporary_file_after_resume(tmp_path):
    """A run killed while writing ``prompt/adapter/adapter_model.safetensors``: before, its
    ``.adapter_model.safetensors.<random>.tmp`` stayed in ``prompt/adapter/`` after ``--resume``
    (the sweep looked at the top folder only). Only the atomic writer's own temp names go, and not
    below a folder another live run holds."""
    killer = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        real = os.replace
        def torn(src, dst, *a, **kw):  # the process dies with the temp file written, not yet renamed
            if os.path.basename(dst) == "adapter_model.safetensors":
                os._exit(9)
            return real(src, dst, *a, **kw)
        os.replace = torn
        import test_resume_state as t
        t._pipeline(t.TINY, {str(tmp_path)!r})
    """)
    proc = subprocess.run([sys.executable, "-c", killer], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": os.getcwd(), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 9, proc.stderr[-2000:]
    adapter = tmp_path / "prompt" / "adapter"
    torn = list(adapter.glob(".adapter_model.safetensors.*.tmp"))
    assert len(torn) == 1 and not (adapter / "adapter_model.safetensors").exists()
    (tmp_path / ".git").mkdir()  # hidden folders are not entered
    keep = [adapter / "notes.tmp", adapter / ".keep.tmp", tmp_path / "pretrain" / "scratch.txt",
            tmp_path / ".git" / ".index.abcd1234.tmp"]
    for p in keep:
        p.write_text("the user's")
    live = tmp_path / "other"  # a folder another running process holds (its lock names a live pid)
    live.mkdir()
    (live / ".lock").write_text(f"{os.getpid()}\n")
    (live / ".results.json.abcd1234.tmp").write_text("being written")
    from promptkit.train.run_dir import source_digest

    source_digest.cache_clear()  # as a fresh process would: the sources as they are now, like the killed run's
    _pipeline(TINY, tmp_path, resume=True)
    assert not torn[0].exists() and (adapter / "adapter_model.safetensors").is_file()
    assert not list(tmp_path.rglob(".*.safetensors.*.tmp"))
    assert all(p.exists() for p in keep) and (live / ".results.json.abcd1234.tmp").exists()
