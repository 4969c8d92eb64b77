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
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .._atomic import atomic_write_bytes
from ..checkpoint import (
    add_prefix,
    fingerprint,
    load_checkpoint,
    optimizer_from_flat,
    optimizer_to_flat,
    save_checkpoint,
    scheduler_to_json,
    take_prefix,
)
from ..data import make_loader
from ..metrics import metrics_for, primary_metric
from ..recipes import compile_backend
from .run_dir import BEST, LAST, RESULTS, RUN, RunDirError, lock_run_dir, prepare_out_dir

Batch = dict[str, torch.Tensor]
ForwardFn = Callable[[nn.Module, Batch], torch.Tensor]
MaskFn = Callable[[Batch, int, torch.Generator], torch.Tensor]

_PLUGIN_METHODS = ("setup", "extra_loss", "after_backward", "on_epoch_end", "state_dict", "load_state_dict")


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message names epoch, step and samples."""


@dataclass
class FitResult:
    """What :func:`fit` returns; the model holds the best-validation weights afterwards.

    Attributes:
        best_epoch: 1-based epoch of the best validation metric.
        best_valid: validation metrics (and ``loss``) at that epoch.
        test: test-split metrics (and ``loss``) with the best weights.
        history: one dict per epoch (``epoch``, ``train_loss``, ``valid_loss``, ``lr``, ``valid``,
            plug-in logs, ``seconds``).
    """

    out_dir: Path
    primary: str
    higher_is_better: bool
    best_epoch: int
    best_valid: dict[str, float]
    test: dict[str, float]
    history: list[dict[str, Any]]
    epochs_run: int
    stopped_early: bool

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["out_dir"] = str(self.out_dir)
        return d


# --- seeds ---------------------------------------------------------------------------------------
def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from any repr-able parts, e.g. ``derive_seed(seed, epoch, "loader")``."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), Python's ``random`` and numpy's global generator."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- loss and metrics ----------------------------------------------------------------------------
def task_loss(preds: torch.Tensor, labels: torch.Tensor, task: str) -> torch.Tensor:
    """L1 for regression (``preds (B, 1)``, ``labels (B,)``); cross-entropy otherwise.

    Classification: ``preds (B, C)`` with ``labels (B,)``, or ``preds (B, K*C)`` with
    ``labels (B, K)`` (K tasks of C classes each).
    """
    if not isinstance(preds, torch.Tensor):
        from ..hookspec import select_output

        select_output(preds, None)  # raises: names the type and the spec's 'output' entry
    preds = preds.float()
    if task == "regression":
        if preds.dim() != 2 or preds.shape[1] != 1 or preds.shape[0] != labels.shape[0]:
            raise ValueError(f"regression needs preds (B, 1) for labels {tuple(labels.shape)}, got {tuple(preds.shape)}")
        return F.l1_loss(preds.squeeze(-1), labels.reshape(-1).float())
    if labels.dim() == 1:
        return F.cross_entropy(preds, labels.long())
    k = labels.shape[1]
    if preds.shape[1] % k:
        raise ValueError(f"{k} classification tasks need logits (B, {k}*C), got {tuple(preds.shape)}")
    logits = rearrange(preds, "b (k c) -> (b k) c", k=k)
    return F.cross_entropy(logits, rearrange(labels.long(), "b k -> (b k)"))


def _metric_preds(preds: torch.Tensor) -> torch.Tensor:
    preds = preds.detach().float().cpu()
    return preds.squeeze(-1) if preds.shape[-1] == 1 else preds


def default_forward(modalities: Sequence[str], with_mask: bool, hooks: Any = None) -> ForwardFn:
    """``model(**features)``, or ``model(**features, mask=batch["mask"])`` when masks are drawn.

    A bare backbone goes through :func:`promptkit.hookspec.backbone_caller`: ``hooks`` (else the
    spec registered for its class) names its forward keywords and reads a non-tensor output. A
    prompter takes modality names and reads its backbone's output itself.
    """
    from ..hookspec import backbone_caller
    from ..prompter import MissingModalityPrompter

    callers: dict[int, Callable[..., torch.Tensor]] = {}  # the spec is resolved once per model, not per step

    def forward(model: nn.Module, batch: Batch) -> torch.Tensor:
        if id(model) not in callers:
            callers[id(model)] = backbone_caller(model, None if isinstance(model, MissingModalityPrompter) else hooks)
        features = {m: batch[m] for m in modalities}
        extra = {"mask": batch["mask"]} if with_mask else {}
        return callers[id(model)](features, **extra)

    return forward


def _to_device(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Any,
    *,
    task: str,
    modalities: Sequence[str],
    metric_kind: str,
    batch_size: int = 256,
    forward: ForwardFn | None = None,
    mask_fn: MaskFn | None = None,
    mask_seed: int = 0,
    device: str | torch.device | None = None,
    autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
) -> dict[str, float]:
    """Loss and metrics of ``model`` on one split (eval mode, fixed order).

    With ``mask_fn`` the masks come from a generator seeded by ``mask_seed``, so every call sees
    the same masks.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    forward = forward or default_forward(modalities, mask_fn is not None)
    gen = _generator(mask_seed)
    metric = metrics_for(metric_kind)
    model.eval()
    total, n = 0.0, 0
    for batch in make_loader(dataset, batch_size, shuffle=False):
        batch = _to_device(batch, device)
        if mask_fn is not None:
            batch["mask"] = mask_fn(batch, 0, gen).to(device)
        with autocast() if autocast else contextlib.nullcontext():
            preds = forward(model, batch)
        labels = batch["labels"]
        total += float(task_loss(preds, labels, task)) * labels.shape[0]
        n += labels.shape[0]
        metric.update(_metric_preds(preds), labels.cpu())
    out = {k: float(v) for k, v in metric.compute().items()}
    out["loss"] = total / max(n, 1)
    return out


# --- model state ---------------------------------------------------------------------------------
def _state_refs(model: nn.Module, params: Sequence[nn.Parameter]) -> dict[str, torch.Tensor]:
    """Name → live tensor for the trained parameters and every buffer (what training changes)."""
    ids = {id(p) for p in params}
    return {
        name: t
        for name, t in model.state_dict(keep_vars=True).items()
        if not isinstance(t, nn.Parameter) or id(t) in ids
    }


def _runtime_state(model: nn.Module) -> dict[str, dict[str, torch.Tensor]]:
    """State a module keeps outside its parameters and buffers (e.g. MMIM's entropy memory), from
    every submodule with a ``training_state() -> {name: tensor}`` method, by module path."""
    return {path: dict(m.training_state()) for path, m in model.named_modules() if callable(getattr(m, "training_state", None))}


def _load_runtime_state(model: nn.Module, tensors: Mapping[str, torch.Tensor], saved: Mapping[str, list], where: Path) -> None:
    """Give each module with ``load_training_state`` what :func:`_runtime_state` saved for it."""
    modules = {path: m for path, m in model.named_modules() if callable(getattr(m, "load_training_state", None))}
    if set(saved) != set(modules):
        raise RunDirError(f"{where} holds runtime state for modules {sorted(saved)}, this model keeps it in "
                          f"{sorted(modules)}; it was saved by another model")
    for path, module in modules.items():
        module.load_training_state({k: tensors[f"runtime.{path}:{k}"] for k in saved[path]})


def _snapshot(refs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in refs.items()}


@torch.no_grad()
def _restore(refs: Mapping[str, torch.Tensor], tensors: Mapping[str, torch.Tensor]) -> None:
    for k, t in refs.items():
        t.copy_(tensors[k])


def _check_params(model: nn.Module, params: Sequence[nn.Parameter] | None) -> list[nn.Parameter]:
    if params is None:
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError(f"{type(model).__name__} has no parameter with requires_grad=True: nothing to train")
        return params
    params = list(params)
    names = {id(p): n for n, p in model.named_parameters()}
    for i, p in enumerate(params):
        if id(p) not in names:
            raise ValueError(f"params[{i}] (shape {tuple(p.shape)}) is not a parameter of {type(model).__name__}")
        if not p.requires_grad:
            raise ValueError(f"params[{i}] ({names[id(p)]}) has requires_grad=False; it cannot train")
    if not params:
        raise ValueError("params is empty: nothing to train")
    return params


# --- optimizer and scheduler ---------------------------------------------------------------------
def build_optimizer(params: Sequence[nn.Parameter] | Sequence[dict], stage: Any) -> torch.optim.Optimizer:
    """timm's ``create_optimizer_v2`` over exactly ``params`` (tensors, or parameter groups
    ``{"params": [...], "lr": ...}``; a group without ``lr`` uses ``stage.lr``)."""
    from timm.optim import create_optimizer_v2

    return create_optimizer_v2(list(params), opt=stage.optimizer, lr=stage.lr, weight_decay=stage.weight_decay)


def _split_groups(params: Sequence[Any] | None) -> tuple[list[nn.Parameter] | None, list[dict] | None]:
    """``params`` as a flat tensor list, and the parameter groups when it was given as groups."""
    if params is None:
        return None, None
    params = list(params)
    if params and all(isinstance(g, dict) for g in params):
        for i, g in enumerate(params):
            if "params" not in g:
                raise ValueError(f"parameter group {i} lacks 'params'; got keys {sorted(g)}")
        groups = [{**g, "params": list(g["params"])} for g in params if list(g["params"])]
        return [p for g in groups for p in g["params"]], groups
    if any(isinstance(g, dict) for g in params):
        raise TypeError("params mixes tensors and parameter-group dicts; give one or the other")
    return params, None


class _Scheduler:
    """``plateau`` (torch ReduceLROnPlateau on the validation loss, as MulT), ``cosine`` (timm's
    factory, per epoch) or ``none``; ``step(epochs_done, valid_loss)`` after each epoch.

    The plateau scheduler is torch's own: timm's wrapper does not checkpoint its counters. The
    cosine schedule is a function of the epoch and the stage's ``epochs`` alone, so a resumed run
    rebuilds it from the epoch count it is resumed with (extending ``epochs`` stretches the rest of
    the schedule instead of leaving the added epochs at the old schedule's final lr).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, stage: Any) -> None:
        self.kind = stage.scheduler
        if self.kind == "plateau":
            self.impl = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min", factor=stage.plateau_factor, patience=stage.plateau_patience
            )
        elif self.kind == "cosine":
            from timm.scheduler import create_scheduler_v2

            self.impl, _ = create_scheduler_v2(optimizer, sched="cosine", num_epochs=stage.epochs)
        elif self.kind == "none":
            self.impl = None
        else:
            raise ValueError(f"scheduler must be 'plateau', 'cosine' or 'none', got {self.kind!r}")

    def step(self, epochs_done: int, valid_loss: float) -> None:
        if self.kind == "plateau":
            self.impl.step(valid_loss)
        elif self.kind == "cosine":
            self.impl.step(epochs_done)

    def state_dict(self) -> dict[str, Any]:
        return {} if self.impl is None else scheduler_to_json(self.impl)

    def load_state_dict(self, state: dict[str, Any], epochs_done: int) -> None:
        if self.kind == "cosine":
            self.impl.step(epochs_done)  # the lr of the next epoch under this run's schedule
        elif self.impl is not None:
            self.impl.load_state_dict(state)


# --- device --------------------------------------------------------------------------------------
def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/``"auto"`` → CUDA if available else CPU; an unusable device is an error."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device {device!r} is not a torch device ({e}); use 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r} is not supported; use 'cpu', 'cuda' or 'cuda:N'")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} was asked for but torch.cuda.is_available() is False")
        if dev.index is not None:
            torch.cuda.set_device(dev.index)
    return dev


def _accelerator(device: torch.device):
    """accelerate's Accelerator: bf16 autocast on a GPU that supports it, plain on CPU."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    cpu = device.type == "cpu"
    mixed = "bf16" if not cpu and torch.cuda.is_bf16_supported() else "no"
    try:
        return Accelerator(cpu=cpu, mixed_precision=mixed)
    except ValueError:  # an earlier fit in this process set other precision/device settings
        AcceleratorState._reset_state(reset_partial_state=True)
        return Accelerator(cpu=cpu, mixed_precision=mixed)


def check_compile(stage: Any) -> str | None:
    """The ``torch.compile`` backend ``stage.compile`` asks for (None: eager).

    Raises:
        RuntimeError: the backend cannot run here (e.g. inductor without a C++ compiler).
    """
    value = getattr(stage, "compile", False)
    backend = compile_backend(value)
    if backend is None:
        return None
    from ..compile import compile_available

    ok, why = compile_available(backend)
    if not ok:
        raise RuntimeError(
            f"the stage asks for torch.compile (compile = {json.dumps(value)}, backend {backend!r}) but it cannot run "
            f"here: {why}; set compile = false in the recipe, leave out --compile, or pick --compile eager"
        )
    return backend


# --- progress ------------------------------------------------------------------------------------
class _Progress:
    """rich progress bars (epoch, step, loss, ETA) or nothing."""

    def __init__(self, enabled: bool, epochs: int, start: int) -> None:
        self.enabled = enabled
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.console = Console(stderr=True)
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeRemainingColumn(),
            console=self.console,
        )
        self.epochs_task = self.bar.add_task("epochs", total=epochs, completed=start, loss="-")
        self.step_task = self.bar.add_task("epoch", total=None, loss="-")

    def __enter__(self) -> "_Progress":
        if self.enabled:
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.bar.stop()

    def epoch(self, epoch: int, epochs: int, steps: int) -> None:
        if self.enabled:
            self.bar.reset(self.step_task, total=steps, description=f"epoch {epoch}/{epochs}", loss="-")

    def step(self, loss: float) -> None:
        if self.enabled:
            self.bar.update(self.step_task, advance=1, loss=f"{loss:.4f}")

    def epoch_done(self, line: str, loss: float) -> None:
        if self.enabled:
            self.bar.update(self.epochs_task, advance=1, loss=f"{loss:.4f}")
            self.bar.console.print(line)


def print_results(result: FitResult, title: str = "test metrics (best validation epoch)") -> None:
    """A rich table of the final test metrics."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{title}: epoch {result.best_epoch}, {result.out_dir}")
    table.add_column("metric")
    table.add_column("valid", justify="right")
    table.add_column("test", justify="right")
    for k, v in result.test.items():
        mark = " *" if k == result.primary else ""
        table.add_row(k + mark, f"{result.best_valid.get(k, math.nan):.4f}", f"{v:.4f}")
    Console().print(table)


def _write_results(out_dir: Path, result: FitResult, extra: dict[str, Any]) -> None:
    blob = json.dumps({**extra, **result.to_dict()}, indent=2)
    atomic_write_bytes(out_dir / f"{RESULTS}.json", blob.encode())
    rows = []
    for h in result.history:
        row = {k: v for k, v in h.items() if k != "valid"}
        row.update({f"valid_{k}": v for k, v in h["valid"].items()})
        rows.append(row)
    rows.append({"epoch": "test", **{f"test_{k}": v for k, v in result.test.items()}})
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(out_dir / f"{RESULTS}.csv", buf.getvalue().encode())


# --- fit -----------------------------------------------------------------------------------------
def _stage_dict(stage: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(stage):
        return dataclasses.asdict(stage)
    return dict(vars(stage))


def _better(value: float, best: float | None, higher: bool) -> bool:
    """Does ``value`` beat ``best``? Any value beats none; a finite one beats NaN/inf."""
    if best is None:
        return True
    if not math.isfinite(value):
        return False
    if not math.isfinite(best):
        return True
    return value > best if higher else value < best


def _aux_loss(model: nn.Module) -> torch.Tensor | None:
    for m in (model, getattr(model, "backbone", None)):
        fn = getattr(m, "auxiliary_loss", None)
        if callable(fn):
            return fn()
    return None


@dataclass
class _Loop:
    """What one run holds; :func:`fit` drives it epoch by epoch."""

    model: nn.Module
    data: Any
    stage: Any
    out_dir: Path
    forward: ForwardFn
    params: list[nn.Parameter]
    mask_fn: MaskFn | None
    plugins: list[Any]
    metric_kind: str
    device: torch.device
    accelerator: Any
    optimizer: torch.optim.Optimizer
    scheduler: _Scheduler
    refs: dict[str, torch.Tensor]
    state: dict[str, Any] = field(default_factory=lambda: {
        "epoch": 0, "best_epoch": 0, "best_metric": None, "bad_epochs": 0, "stopped_early": False, "history": []
    })
    best: dict[str, torch.Tensor] | None = None
    best_valid: dict[str, float] = field(default_factory=dict)

    # --- checkpoints ---------------------------------------------------------------------------
    def save(self) -> None:
        """Write ``last.safetensors``: everything a resumed run needs."""
        opt_tensors, opt_meta = optimizer_to_flat(self.optimizer.state_dict())
        tensors = {**add_prefix(_snapshot(self.refs), "model."), **opt_tensors}
        if self.best is not None:
            tensors.update(add_prefix(self.best, "best."))
        plugin_meta = []
        for i, p in enumerate(self.plugins):
            pt, pm = p.state_dict()
            tensors.update(add_prefix(pt, f"plugin.{i}."))
            plugin_meta.append({"type": type(p).__name__, "meta": pm})
        runtime = _runtime_state(self.model)
        for path, state in runtime.items():
            tensors.update(add_prefix({k: v.detach().cpu() for k, v in state.items()}, f"runtime.{path}:"))
        meta = {"state": self.state, "best_valid": self.best_valid, "optimizer": opt_meta,
                "scheduler": self.scheduler.state_dict(), "plugins": plugin_meta, "stage": _stage_dict(self.stage),
                "runtime": {path: sorted(state) for path, state in runtime.items()}}
        save_checkpoint(self.out_dir / LAST, tensors, meta, kind="train-state", model_prefix="model.")

    def load(self) -> None:
        """Restore everything :meth:`save` wrote (a different model's file is refused)."""
        path = self.out_dir / LAST
        tensors, meta = load_checkpoint(path, kind="train-state", expect=self.refs)
        saved = [m["type"] for m in meta["plugins"]]
        if saved != [type(p).__name__ for p in self.plugins]:
            raise RunDirError(f"{path} was saved with plug-ins {saved}, this run has {[type(p).__name__ for p in self.plugins]}")
        _restore(self.refs, take_prefix(tensors, "model."))
        self.optimizer.load_state_dict(optimizer_from_flat(tensors, meta["optimizer"]))
        self.scheduler.load_state_dict(meta["scheduler"], epochs_done=int(meta["state"]["epoch"]))
        for i, (p, pm) in enumerate(zip(self.plugins, meta["plugins"])):
            p.load_state_dict(take_prefix(tensors, f"plugin.{i}."), pm["meta"])
        _load_runtime_state(self.model, tensors, meta.get("runtime", {}), path)
        self.best = take_prefix(tensors, "best.") or None
        self.state, self.best_valid = meta["state"], meta["best_valid"]

    # --- one epoch -----------------------------------------------------------------------------
    def train_epoch(self, epoch: int, bar: "_Progress") -> float:
        """One pass over the shuffled train split; returns the mean training loss."""
        seed, stage, dev = int(self.stage.seed), self.stage, self.device
        seed_everything(derive_seed(seed, epoch, "torch"))
        mask_gen = _generator(derive_seed(seed, epoch, "mask"))
        loader = make_loader(self.data.splits["train"], stage.batch_size, shuffle=True,
                             seed=derive_seed(seed, epoch, "loader"))
        bar.epoch(epoch, stage.epochs, len(loader))
        self.model.train()
        total, n = 0.0, 0
        for step, batch in enumerate(loader, start=1):
            batch = _to_device(batch, dev)
            if self.mask_fn is not None:
                batch["mask"] = self.mask_fn(batch, epoch, mask_gen).to(dev)
            labels = batch["labels"]
            with self.accelerator.autocast():
                preds = self.forward(self.model, batch)
            loss = task_loss(preds, labels, self.data.task)
            aux = _aux_loss(self.model)
            if aux is not None:
                loss = loss + aux.float()
            for p in self.plugins:
                extra = p.extra_loss(self.model, batch, preds, labels)
                if extra is not None:
                    loss = loss + extra.float()
            if not torch.isfinite(loss):
                done = self.state["epoch"]
                kept = f"{self.out_dir / LAST} (epoch {done})" if done else "none yet (failed in the first epoch)"
                raise NonFiniteLossError(
                    f"training loss is {float(loss.detach())} at epoch {epoch}, step {step}/{len(loader)}; "
                    f"batch sample indices {batch['index'].tolist()}; last good checkpoint: {kept}"
                )
            self.optimizer.zero_grad(set_to_none=True)
            self.accelerator.backward(loss)
            for p in self.plugins:
                p.after_backward(self.model)
            if stage.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(self.params, stage.grad_clip)
            self.optimizer.step()
            total += float(loss.detach()) * labels.shape[0]
            n += labels.shape[0]
            bar.step(total / n)
        return total / max(n, 1)

    def evaluate(self, split: str) -> dict[str, float]:
        return evaluate(
            self.model, self.data.splits[split], task=self.data.task, modalities=self.data.modalities,
            metric_kind=self.metric_kind, batch_size=self.stage.batch_size, forward=self.forward,
            mask_fn=self.mask_fn, mask_seed=derive_seed(int(self.stage.seed), split), device=self.device,
            autocast=self.accelerator.autocast,
        )

    def end_epoch(self, epoch: int, train_loss: float, seconds: float) -> str:
        """Validate, step the scheduler, keep the best weights, early-stop, checkpoint."""
        primary, higher = primary_metric(self.metric_kind)
        valid = self.evaluate("valid")
        self.scheduler.step(epoch, valid["loss"])
        value, state = valid[primary], self.state
        improved = _better(value, state["best_metric"], higher)
        entry = {"epoch": epoch, "train_loss": train_loss, "valid_loss": valid["loss"],
                 "lr": float(self.optimizer.param_groups[0]["lr"]), "valid": valid}
        for p in self.plugins:
            entry.update({k: float(v) for k, v in p.on_epoch_end(epoch).items()})
        entry["seconds"] = seconds
        state["history"].append(entry)
        state["epoch"] = epoch
        if improved:
            self.best, self.best_valid = _snapshot(self.refs), valid
            state.update(best_epoch=epoch, best_metric=value, bad_epochs=0)
            save_checkpoint(self.out_dir / BEST, self.best, {"epoch": epoch, "valid": valid}, kind="weights")
        else:
            state["bad_epochs"] += 1
            patience = self.stage.early_stop_patience
            state["stopped_early"] = patience is not None and state["bad_epochs"] >= patience
        self.save()
        return (f"epoch {epoch}: train loss {train_loss:.4f}, valid loss {valid['loss']:.4f}, "
                f"valid {primary} {value:.4f}" + (" (best)" if improved else ""))


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
        mask_fn: ``mask_fn(batch, epoch, generator) -> mask (B, M)`` replaces ``batch["mask"]``
            in training (a generator per epoch, seeded by ``(seed, epoch)``) and in evaluation
            (``epoch`` 0, a generator seeded per split so every evaluation sees the same masks).
        plugins: :class:`~promptkit.train.plugins.TrainPlugin`-like objects.
        metric_kind: a :func:`promptkit.metrics.metrics_for` kind; its primary metric selects
            the best epoch and drives early stopping.
        resume: continue from ``out_dir/last.safetensors`` (a fresh start if there is none).
        overwrite: replace a run already in ``out_dir``.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or None (CUDA when available).
        progress: rich progress bars and a result table; quiet when False.
        run_info: extra settings that identify the run (e.g. backbone and data), hashed into
            ``run.json`` with the stage so a different run in ``out_dir`` is refused.
        evaluate_test: score the test split with the best weights at the end (``FitResult.test``);
            False leaves it unread (``test`` is empty), for callers whose own protocol is the one
            reading of the test split.

    Raises:
        RuntimeError: ``stage.compile`` asks for a backend that cannot run here (before anything
            is written).
        NonFiniteLossError: NaN/inf loss (the last epoch's checkpoint stays intact).
        RunDirError: ``out_dir`` holds a run and neither ``resume`` nor ``overwrite`` is set,
            or ``resume`` meets a run with other settings, or another process is training into it
            (the directory is locked while ``fit`` runs, see :mod:`promptkit.train.run_dir`).
    """
    out_dir = Path(out_dir)
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other: continue the run in out_dir, or replace it")
    primary, higher = primary_metric(metric_kind)
    params, groups = _split_groups(params)
    params = _check_params(model, params)
    plugins = list(plugins)
    for p in plugins:
        lacking = [m for m in _PLUGIN_METHODS if not callable(getattr(p, m, None))]
        if lacking:
            raise TypeError(f"plug-in {type(p).__name__} lacks {lacking}; subclass promptkit.train.TrainPlugin")
    dev = resolve_device(device)
    backend = check_compile(stage)
    accelerator = _accelerator(dev)
    model.to(dev)
    if backend is not None:
        from ..compile import compile_model

        compile_model(model, backend=backend)
    refs = _state_refs(model, params)
    identity = {
        "stage": _stage_dict(stage),
        "run": dict(run_info or {}),
        "model": type(model).__name__,
        "state_fingerprint": fingerprint(refs),
        "data": getattr(data, "description", None),
        "metric_kind": metric_kind,
        "masked": mask_fn is not None,
        "plugins": [type(p).__name__ for p in plugins],
    }
    with lock_run_dir(out_dir):  # one writer per directory; stray .tmp files of a crash are removed
        prepare_out_dir(out_dir, identity, resume, overwrite)

        seed_everything(derive_seed(int(stage.seed), "setup"))
        optimizer = build_optimizer(groups or params, stage)
        loop = _Loop(
            model=model, data=data, stage=stage, out_dir=out_dir,
            forward=forward or default_forward(data.modalities, mask_fn is not None, hooks),
            params=params, mask_fn=mask_fn, plugins=plugins, metric_kind=metric_kind, device=dev,
            accelerator=accelerator, optimizer=optimizer, scheduler=_Scheduler(optimizer, stage), refs=refs,
        )
        for p in plugins:
            p.setup(model, params, accelerator)
        if resume and (out_dir / LAST).exists():  # a directory there is named by the loader
            loop.load()

        epochs = int(stage.epochs)
        with _Progress(progress, epochs, loop.state["epoch"]) as bar:
            for epoch in range(loop.state["epoch"] + 1, epochs + 1):
                if loop.state["stopped_early"]:
                    break
                t0 = time.perf_counter()
                train_loss = loop.train_epoch(epoch, bar)
                bar.epoch_done(loop.end_epoch(epoch, train_loss, time.perf_counter() - t0), train_loss)

        if loop.best is not None:
            _restore(refs, loop.best)
        st = loop.state
        result = FitResult(
            out_dir=out_dir, primary=primary, higher_is_better=higher, best_epoch=st["best_epoch"],
            best_valid=loop.best_valid, test=loop.evaluate("test") if evaluate_test else {}, history=st["history"],
            epochs_run=st["epoch"],
            stopped_early=st["stopped_early"],
        )
        _write_results(out_dir, result, {"metric_kind": metric_kind, "data": identity["data"], "split": "test"})
        if progress and evaluate_test:
            print_results(result)
        return result
