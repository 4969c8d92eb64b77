"""The generic fit loop both stages run: train, validate, checkpoint, early-stop, test.

``fit`` trains the given parameters (default: those with ``requires_grad``) with L1 loss
(regression) or cross-entropy (classification; labels ``(B, K)`` with logits ``(B, K*C)`` are K
tasks of C classes, IEMOCAP's four binary tasks), keeps the best-validation weights and reports
the **test** split with them (never the validation split).

Repeatability: every epoch starts by reseeding torch/random/numpy from ``(seed, epoch)`` and
building the shuffling and mask generators from ``(seed, epoch)``; the checkpoint written at each
epoch's end holds everything else (trainable weights, buffers, optimizer, scheduler, best state,
history, plug-in states). A run resumed at an epoch boundary therefore equals an uninterrupted one
bit for bit on CPU.

Devices: the model goes to ``device`` (CUDA when available); accelerate's ``Accelerator`` runs
the forward passes under bf16 autocast on a GPU that supports it and does the backward pass; on
CPU it is ``Accelerator(cpu=True)`` and the loop is plain float32.

Compilation: a stage whose ``compile`` asks for a backend (``[pretrain] compile = true``, or
``--compile``) has its model compiled in place by :func:`promptkit.compile.compile_model` after it
is on its device; a backend that cannot run here is refused before anything is written. The state
dict, checkpoints and run identity are those of an eager run (``compile`` may change on resume),
and the model stays compiled afterwards.

Files in ``out_dir``: ``run.json`` (the run's settings and their hash), ``last.safetensors``
(resume state), ``best.safetensors`` (best-validation weights of the trained tensors and buffers),
``results.json`` / ``results.csv`` (history per epoch and the final test metrics).

The pieces, in the order :func:`fit` uses them (this module keeps only ``fit``; import every
other name from the module that defines it):

- :mod:`.optim` — the trained parameters, the optimizer (timm) and the per-epoch scheduler;
- :mod:`.device` — the device and the ``torch.compile`` backend;
- :mod:`.state` — the training state and ``last.safetensors``;
- :mod:`.run_dir` — ``run.json``, the refusal of another run, the lock;
- :mod:`.loop` — one epoch of steps and the end of an epoch (:mod:`promptkit.seeding`,
  :mod:`.forward`, :mod:`.losses`, :mod:`.scoring` below it);
- :mod:`.progress` and :mod:`.results` — the bars, the result table, ``results.json`` / ``.csv``;
- :mod:`promptkit.plugins` — the plug-in protocol.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import fingerprint
from ..compile import compile_model
from ..metrics import primary_metric
from ..plugins import check_plugins
from ..seeding import derive_seed, seed_everything
from ..trackers import check_log_with
from .device import check_compile, resolve_device
from .distributed import check_process_split, make_accelerator
from .forward import ForwardFn, MaskFn, default_forward
from .loop import TrainLoop
from .optim import (
    EpochScheduler,
    build_optimizer,
    check_trainable_params,
    split_param_groups,
)
from .progress import ProgressBars, print_results
from .results import FitResult, write_results
from .run_dir import LAST, code_identity, lock_run_dir, prepare_out_dir
from .state import restore, stage_dict, trained_state_refs
from .tracking import accelerate_log_with, tracker_config


def fit(
    model: nn.Module,
    data: Any,
    stage: Any,
    out_dir: str | Path,
    *,
    forward: ForwardFn | None = None,
    hooks: Any = None,
    params: Sequence[nn.Parameter] | Sequence[dict] | None = None,
    mask_fn: MaskFn | None = None,
    plugins: Sequence[Any] = (),
    metric_kind: str = "mosi",
    resume: bool = False,
    overwrite: bool = False,
    device: str | torch.device | None = None,
    progress: bool = True,
    run_info: Mapping[str, Any] | None = None,
    evaluate_test: bool = True,
    log_with: Sequence[str] | None = None,
) -> FitResult:
    """Train ``params`` of ``model`` on ``data`` and report the test split with the best weights.

    Args:
        model: any module; called through ``forward``.
        data: a ``DataBundle`` (``splits``, ``modalities``, ``task``).
        stage: a ``StageSection`` (epochs, batch_size, lr, weight_decay, optimizer, scheduler,
            plateau_patience, plateau_factor, grad_clip, early_stop_patience, seed, and optionally
            ``compile``: false, true or a ``torch.compile`` backend name).
        out_dir: where ``run.json``, checkpoints and results go.
        forward: ``forward(model, batch) -> preds (B, out_dim)``; default
            ``model(**features)`` (plus ``mask=batch["mask"]`` when ``mask_fn`` is given), through
            :func:`default_forward`.
        hooks: the default forward's HookSpec for a backbone without a registered one (its forward
            keywords and ``output``).
        params: the tensors to train (default: every parameter with ``requires_grad``), or
            parameter groups ``[{"params": [...], "lr": ...}, ...]`` (e.g. prompts at their own
            learning rate); the optimizer holds only these.
        mask_fn: ``mask_fn(batch, epoch, generator) -> mask (N, M)`` gives ``batch["mask"]`` in
            training (a generator per epoch, seeded by ``(seed, epoch)``) and in evaluation
            (``epoch`` 0, a generator seeded per split so every evaluation sees the same masks).
            It is called once per epoch (or evaluation) with a batch holding the whole split's
            ``labels`` and ``index``; each batch then takes its rows by sample index, so the masks do
            not depend on the batching or the number of processes.
        plugins: :class:`~promptkit.plugins.TrainPlugin`-like objects.
        metric_kind: a :func:`promptkit.metrics.metrics_for` kind; its primary metric selects
            the best epoch and drives early stopping.
        resume: continue from ``out_dir/last.safetensors`` (a fresh start if there is none).
        overwrite: replace a run already in ``out_dir``.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or None (CUDA when available).
        progress: rich progress bars and a result table; quiet when False.
        run_info: extra settings that identify the run (e.g. backbone and data), hashed into
            ``run.json`` with the stage so a different run in ``out_dir`` is refused. Its
            ``"factory"`` (a user factory string) adds that module's source digest to the
            identity, beside the promptkit version and source digest every run has
            (:func:`~promptkit.train.run_dir.code_identity`): a run resumed under other code is
            refused, naming what changed (``overwrite`` retrains).
        evaluate_test: score the test split with the best weights at the end (``FitResult.test``);
            False leaves it unread (``test`` is empty), for callers whose own protocol is the one
            reading of the test split.
        log_with: experiment trackers (``"csv"``, ``"tensorboard"``, ...; see
            :mod:`promptkit.train.tracking`), logging to ``out_dir/logs``; default: the stage's
            ``log_with``, else none.

    Several processes (``torchrun``, ``accelerate launch``) run one data-parallel fit: see
    :mod:`promptkit.train.distributed` (``stage.batch_size`` is the global batch).

    Raises:
        RuntimeError: ``stage.compile`` asks for a backend that cannot run here (before anything
            is written).
        NonFiniteLossError: NaN/inf loss (the last epoch's checkpoint stays intact).
        RunDirError: ``out_dir`` holds a run and neither ``resume`` nor ``overwrite`` is set,
            or ``resume`` meets a run with other settings, or another process is training into it
            (the directory is locked while ``fit`` runs, see :mod:`promptkit.train.run_dir`).
    """
    # 1. check the arguments: what trains, which plug-ins, where, compiled or not
    out_dir = Path(out_dir)
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other: continue the run in out_dir, or replace it")
    primary, higher = primary_metric(metric_kind)
    params, groups = split_param_groups(params)
    params = check_trainable_params(model, params)
    plugins = check_plugins(plugins)
    dev = resolve_device(device)
    backend = check_compile(stage)
    trackers = check_log_with(getattr(stage, "log_with", None) if log_with is None else log_with)

    # 2. the processes and the model: on its device, compiled if asked, wrapped for data parallelism
    accelerator = make_accelerator(dev, log_with=accelerate_log_with(trackers, out_dir / "logs", out_dir.name or "run"),
                                   project_dir=out_dir, find_unused_parameters=hasattr(model, "prompt_tensors"))
    processes = accelerator.num_processes
    if processes > 1:
        dev = accelerator.device  # cuda:<local rank> on GPUs, cpu with gloo
        check_process_split(int(stage.batch_size), processes, data.splits)
    model.to(dev)
    if backend is not None:
        compile_model(model, backend=backend)
    refs = trained_state_refs(model, params)
    train_model = accelerator.prepare_model(model, device_placement=False) if processes > 1 else model

    # 3. the run's identity, checked against out_dir
    identity = {
        "stage": stage_dict(stage),
        "run": dict(run_info or {}),
        "model": type(model).__name__,
        "state_fingerprint": fingerprint(refs),
        "data": getattr(data, "description", None),
        "metric_kind": metric_kind,
        "masked": mask_fn is not None,
        "plugins": [type(p).__name__ for p in plugins],
        "code": code_identity((run_info or {}).get("factory")),  # other code (promptkit, the factory) is another run
    }
    main = accelerator.is_main_process
    processes_record = {"num_processes": processes, "global_batch_size": int(stage.batch_size),
                        "per_process_batch_size": int(stage.batch_size) // processes}
    # one writer per directory (the main process holds the lock); stray .tmp files of a crash are removed
    with lock_run_dir(out_dir) if main else contextlib.nullcontext():
        prepare_out_dir(out_dir, identity, resume, overwrite, write=main, record=processes_record)
        accelerator.wait_for_everyone()

        # 4. optimizer and scheduler; the epoch scheduler steps on the validation loss, which every
        # process computes alike from gathered predictions, so it is not wrapped
        seed_everything(derive_seed(int(stage.seed), "setup"))
        optimizer = build_optimizer(groups or params, stage)
        scheduler = EpochScheduler(optimizer, stage)
        if processes > 1:
            optimizer = accelerator.prepare_optimizer(optimizer, device_placement=False)
        loop = TrainLoop(
            model=model, data=data, stage=stage, out_dir=out_dir,
            forward=forward or default_forward(data.modalities, mask_fn is not None, hooks),
            params=params, mask_fn=mask_fn, plugins=plugins, metric_kind=metric_kind, device=dev,
            accelerator=accelerator, optimizer=optimizer, scheduler=scheduler, refs=refs, train_model=train_model,
        )
        if trackers:
            accelerator.init_trackers(out_dir.name or "run", config=tracker_config(identity, processes_record))

        # 5. plug-ins, then the resumed state
        for p in plugins:
            p.setup(model, params, accelerator)
        if resume and (out_dir / LAST).exists():  # a directory there is named by the loader
            loop.load()

        # 6. the epochs (data loaders are built per epoch in TrainLoop.train_epoch)
        epochs = int(stage.epochs)
        with ProgressBars(progress and main, epochs, loop.counters["epoch"]) as bar:
            for epoch in range(loop.counters["epoch"] + 1, epochs + 1):
                if loop.counters["stopped_early"]:
                    break
                t0 = time.perf_counter()
                train_loss = loop.train_epoch(epoch, bar)
                bar.epoch_done(loop.end_epoch(epoch, train_loss, time.perf_counter() - t0), train_loss)

        # 7. the best weights back, the test split once, the results written
        if loop.best is not None:
            restore(refs, loop.best)
        counters = loop.counters
        test_count: dict[str, int] = {}
        result = FitResult(
            out_dir=out_dir, primary=primary, higher_is_better=higher, best_epoch=counters["best_epoch"],
            best_valid=loop.best_valid, test=loop.evaluate("test", test_count) if evaluate_test else {},
            history=counters["history"], epochs_run=counters["epoch"], stopped_early=counters["stopped_early"],
        )
        if main:
            write_results(out_dir, result, {"metric_kind": metric_kind, "data": identity["data"], "split": "test",
                                            "test_samples": test_count.get("samples"), **processes_record})
        if trackers:
            accelerator.end_training()
        accelerator.wait_for_everyone()
        if progress and evaluate_test and main:
            print_results(result)
        return result
