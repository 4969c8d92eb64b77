"""Training state and its (de)serialisation: what ``last.safetensors`` holds and how it returns.

The state of a run at an epoch boundary is the trained tensors and every buffer (by name, see
:func:`trained_state_refs`), the runtime state modules keep outside them (:func:`runtime_state`),
the optimizer, the scheduler, the plug-ins' states, the best-validation weights and the loop's
counters (:func:`fresh_counters`). Everything else a resumed run needs is derived from
``(seed, epoch)`` (:mod:`promptkit.seeding`).

``last.safetensors`` layout: tensors ``model.*`` (the refs), the optimizer's flat tensors,
``best.*``, ``plugin.<i>.*`` and ``runtime.<module path>:<name>``; meta ``state``, ``best_valid``,
``optimizer``, ``scheduler``, ``plugins`` (class name and meta each), ``stage`` and ``runtime``
(the tensor names per module path).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import (
    add_prefix,
    load_checkpoint,
    optimizer_from_flat,
    optimizer_to_flat,
    save_checkpoint,
    take_prefix,
)
from .optim import EpochScheduler
from .run_dir import RunDirError


def fresh_counters() -> dict[str, Any]:
    """The loop's counters before the first epoch (saved as meta ``state``)."""
    return {"epoch": 0, "best_epoch": 0, "best_metric": None, "bad_epochs": 0, "stopped_early": False, "history": []}


def stage_dict(stage: Any) -> dict[str, Any]:
    """A stage's settings as a plain dict (for ``run.json`` and the checkpoint meta)."""
    if dataclasses.is_dataclass(stage):
        return dataclasses.asdict(stage)
    return dict(vars(stage))


# --- model tensors -------------------------------------------------------------------------------
def trained_state_refs(model: nn.Module, params: Sequence[nn.Parameter]) -> dict[str, torch.Tensor]:
    """Name → live tensor for the trained parameters and every buffer (what training changes)."""
    ids = {id(p) for p in params}
    return {
        name: t
        for name, t in model.state_dict(keep_vars=True).items()
        if not isinstance(t, nn.Parameter) or id(t) in ids
    }


def snapshot(refs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A detached CPU copy of every tensor in ``refs``."""
    return {k: v.detach().to("cpu", copy=True) for k, v in refs.items()}


@torch.no_grad()
def restore(refs: Mapping[str, torch.Tensor], tensors: Mapping[str, torch.Tensor]) -> None:
    """Copy ``tensors`` into the live tensors of ``refs``, in place, name by name."""
    for k, t in refs.items():
        t.copy_(tensors[k])


def runtime_state(model: nn.Module) -> dict[str, dict[str, torch.Tensor]]:
    """State a module keeps outside its parameters and buffers (e.g. MMIM's entropy memory), from
    every submodule with a ``training_state() -> {name: tensor}`` method, by module path."""
    return {path: dict(m.training_state()) for path, m in model.named_modules() if callable(getattr(m, "training_state", None))}


def load_runtime_state(model: nn.Module, tensors: Mapping[str, torch.Tensor], saved: Mapping[str, list], where: Path) -> None:
    """Give each module with ``load_training_state`` what :func:`runtime_state` saved for it."""
    modules = {path: m for path, m in model.named_modules() if callable(getattr(m, "load_training_state", None))}
    if set(saved) != set(modules):
        raise RunDirError(f"{where} holds runtime state for modules {sorted(saved)}, this model keeps it in "
                          f"{sorted(modules)}; it was saved by another model")
    for path, module in modules.items():
        module.load_training_state({k: tensors[f"runtime.{path}:{k}"] for k in saved[path]})


# --- last.safetensors ----------------------------------------------------------------------------
def save_train_state(
    path: Path,
    *,
    model: nn.Module,
    refs: Mapping[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler: EpochScheduler,
    plugins: Sequence[Any],
    stage: Any,
    counters: dict[str, Any],
    best: Mapping[str, torch.Tensor] | None,
    best_valid: dict[str, float],
) -> None:
    """Write ``path`` (``last.safetensors``): everything a resumed run needs."""
    opt_tensors, opt_meta = optimizer_to_flat(optimizer.state_dict())
    tensors = {**add_prefix(snapshot(refs), "model."), **opt_tensors}
    if best is not None:
        tensors.update(add_prefix(best, "best."))
    plugin_meta = []
    for i, p in enumerate(plugins):
        pt, pm = p.state_dict()
        tensors.update(add_prefix(pt, f"plugin.{i}."))
        plugin_meta.append({"type": type(p).__name__, "meta": pm})
    runtime = runtime_state(model)
    for module_path, state in runtime.items():
        tensors.update(add_prefix({k: v.detach().cpu() for k, v in state.items()}, f"runtime.{module_path}:"))
    meta = {"state": counters, "best_valid": best_valid, "optimizer": opt_meta,
            "scheduler": scheduler.state_dict(), "plugins": plugin_meta, "stage": stage_dict(stage),
            "runtime": {module_path: sorted(state) for module_path, state in runtime.items()}}
    save_checkpoint(path, tensors, meta, kind="train-state", model_prefix="model.")


def load_train_state(
    path: Path,
    *,
    model: nn.Module,
    refs: Mapping[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler: EpochScheduler,
    plugins: Sequence[Any],
) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None, dict[str, float]]:
    """Restore what :func:`save_train_state` wrote into the live objects; returns
    ``(counters, best, best_valid)``.

    Raises:
        RunDirError: the file was saved by another model or with other plug-ins.
    """
    tensors, meta = load_checkpoint(path, kind="train-state", expect=refs)
    saved = [m["type"] for m in meta["plugins"]]
    if saved != [type(p).__name__ for p in plugins]:
        raise RunDirError(f"{path} was saved with plug-ins {saved}, this run has {[type(p).__name__ for p in plugins]}")
    restore(refs, take_prefix(tensors, "model."))
    optimizer.load_state_dict(optimizer_from_flat(tensors, meta["optimizer"]))
    scheduler.load_state_dict(meta["scheduler"], epochs_done=int(meta["state"]["epoch"]))
    for i, (p, pm) in enumerate(zip(plugins, meta["plugins"])):
        p.load_state_dict(take_prefix(tensors, f"plugin.{i}."), pm["meta"])
    load_runtime_state(model, tensors, meta.get("runtime", {}), path)
    best = take_prefix(tensors, "best.") or None
    return meta["state"], best, meta["best_valid"]
