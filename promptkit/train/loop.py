"""The training loop of one run: one epoch of steps, then the end of the epoch (validate, step
the scheduler, keep the best weights, early-stop, checkpoint).

One training step, in order: seeded masks → forward under autocast → task loss + the model's
auxiliary loss + the plug-ins' extra losses → finite check (of the output, then the loss) → backward
(accelerate) → plug-in ``after_backward`` → gradient clipping → optimizer step (the hook order of
:mod:`promptkit.plugins`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import save_checkpoint
from ..data import make_loader
from ..metrics import primary_metric
from ..seeding import derive_seed, seed_everything, seeded_generator
from .distributed import epoch_masks
from .forward import ForwardFn, MaskFn, batch_to_device
from .losses import (
    NonFiniteLossError,
    auxiliary_loss,
    check_finite_output,
    model_name,
    task_loss,
)
from .optim import EpochScheduler
from .progress import ProgressBars
from .run_dir import BEST, LAST
from .scoring import evaluate
from .state import fresh_counters, load_train_state, save_train_state, snapshot


EVAL_BATCH = 256
"""Scoring runs batches of at least this many samples (no gradients: larger batches cost no memory
worth counting and amortise the per-call overhead of small models)."""


def improves(value: float, best: float | None, higher: bool) -> bool:
    """Does ``value`` beat ``best``? Any value beats none; a finite one beats NaN/inf."""
    if best is None:
        return True
    if not math.isfinite(value):
        return False
    if not math.isfinite(best):
        return True
    return value > best if higher else value < best


@dataclass
class TrainLoop:
    """What one run holds; :func:`~promptkit.train.engine.fit` drives it epoch by epoch.

    ``counters`` are the loop's progress (``epoch``, ``best_epoch``, ``best_metric``,
    ``bad_epochs``, ``stopped_early``, ``history``); ``best`` the best-validation snapshot of
    ``refs`` (None before the first epoch ends); ``best_valid`` its validation metrics.
    """

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
    scheduler: EpochScheduler
    refs: dict[str, torch.Tensor]
    train_model: nn.Module | None = None  # the model as wrapped for data parallelism (None: ``model``)
    counters: dict[str, Any] = field(default_factory=fresh_counters)
    best: dict[str, torch.Tensor] | None = None
    best_valid: dict[str, float] = field(default_factory=dict)

    # --- checkpoints ---------------------------------------------------------------------------
    @property
    def main(self) -> bool:
        """Whether this process writes files (the only one, or rank 0)."""
        return self.accelerator.is_main_process

    def save(self) -> None:
        """Write ``last.safetensors``: everything a resumed run needs (the main process only)."""
        if not self.main:
            return
        save_train_state(
            self.out_dir / LAST, model=self.model, refs=self.refs, optimizer=self.optimizer,
            scheduler=self.scheduler, plugins=self.plugins, stage=self.stage, counters=self.counters,
            best=self.best, best_valid=self.best_valid,
        )

    def load(self) -> None:
        """Restore everything :meth:`save` wrote (a different model's file is refused)."""
        self.counters, self.best, self.best_valid = load_train_state(
            self.out_dir / LAST, model=self.model, refs=self.refs, optimizer=self.optimizer,
            scheduler=self.scheduler, plugins=self.plugins,
        )

    # --- one epoch -----------------------------------------------------------------------------
    def train_epoch(self, epoch: int, bar: ProgressBars) -> float:
        """One pass over the shuffled train split; returns the mean training loss."""
        seed, stage, dev = int(self.stage.seed), self.stage, self.device
        seed_everything(derive_seed(seed, epoch, "torch"))
        train = self.data.splits["train"]
        masks = None if self.mask_fn is None else \
            epoch_masks(self.mask_fn, train, epoch, seeded_generator(derive_seed(seed, epoch, "mask")))
        # training data: shuffled per (seed, epoch); several processes split each global batch
        loader = make_loader(train, stage.batch_size, shuffle=True, seed=derive_seed(seed, epoch, "loader"))
        if self.accelerator.num_processes > 1:
            loader = self.accelerator.prepare_data_loader(loader, device_placement=False)
        bar.epoch(epoch, stage.epochs, len(loader))
        model = self.train_model or self.model
        self.model.train()
        total, n = 0.0, 0
        for step, batch in enumerate(loader, start=1):
            batch = batch_to_device(batch, dev)
            if masks is not None:
                batch["mask"] = masks[batch["index"].cpu()].to(dev)
            labels = batch["labels"]
            with self.accelerator.autocast():
                preds = self.forward(model, batch)
            finite = torch.isfinite(preds).all() if isinstance(preds, torch.Tensor) else None  # checked with the loss
            loss = task_loss(preds, labels, self.data.task)
            aux = auxiliary_loss(self.model)
            if aux is not None:
                loss = loss + aux.float()
            for p in self.plugins:
                extra = p.extra_loss(self.model, batch, preds, labels)
                if extra is not None:
                    loss = loss + extra.float()
            if not bool(torch.isfinite(loss) if finite is None else torch.isfinite(loss) & finite):  # one sync
                check_finite_output(preds, model_name(self.model), f"training epoch {epoch}, step {step}/{len(loader)} "
                                    f"of {self.out_dir}", batch["index"].tolist(),
                                    f"; last good checkpoint: {self._last_kept()}")  # raises when the output is the cause
                raise NonFiniteLossError(
                    f"training loss is {float(loss.detach())} at epoch {epoch}, step {step}/{len(loader)}; "
                    f"batch sample indices {batch['index'].tolist()}; last good checkpoint: {self._last_kept()}"
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
            if self.accelerator.trackers:
                self.accelerator.log({"train/loss": float(loss.detach()),
                                      "train/lr": float(self.optimizer.param_groups[0]["lr"])},
                                     step=(epoch - 1) * len(loader) + step)
        if self.accelerator.num_processes > 1:  # the epoch's mean over every process's samples
            sums = self.accelerator.reduce(torch.tensor([total, float(n)], device=dev), reduction="sum")
            total, n = float(sums[0]), int(sums[1])
        return total / max(n, 1)

    def _last_kept(self) -> str:
        """The checkpoint a failed step leaves, for its message."""
        done = self.counters["epoch"]
        return f"{self.out_dir / LAST} (epoch {done})" if done else "none yet (failed in the first epoch)"

    def evaluate(self, split: str, counts: dict[str, int] | None = None) -> dict[str, float]:
        """Loss and metrics on ``split`` (masks seeded per split, the same at every call); the number
        of samples scored goes to ``counts["samples"]`` when given."""
        # evaluation: every validation and the final test reading go through here
        return evaluate(
            self.model, self.data.splits[split], task=self.data.task, modalities=self.data.modalities,
            metric_kind=self.metric_kind, batch_size=max(int(self.stage.batch_size), EVAL_BATCH),
            forward=self.forward,
            mask_fn=self.mask_fn, mask_seed=derive_seed(int(self.stage.seed), split), device=self.device,
            autocast=self.accelerator.autocast, accelerator=self.accelerator, counts=counts,
            where=f"the {split} split of {self.out_dir}",
        )

    # --- end of an epoch -----------------------------------------------------------------------
    def end_epoch(self, epoch: int, train_loss: float, seconds: float) -> str:
        """Validate, step the scheduler, keep the best weights, early-stop, checkpoint; returns
        the epoch's one-line summary."""
        primary, higher = primary_metric(self.metric_kind)
        t0 = time.perf_counter()
        valid = self.evaluate("valid")
        valid_seconds = time.perf_counter() - t0
        self.scheduler.step(epoch, valid["loss"])
        value, counters = valid[primary], self.counters
        improved = improves(value, counters["best_metric"], higher)
        entry = {"epoch": epoch, "train_loss": train_loss, "valid_loss": valid["loss"],
                 "lr": float(self.optimizer.param_groups[0]["lr"]), "valid": valid}
        for p in self.plugins:
            entry.update({k: float(v) for k, v in p.on_epoch_end(epoch).items()})
        if self.accelerator.trackers:
            logged = {"epoch/train_loss": train_loss, "epoch/valid_loss": valid["loss"], "epoch/lr": entry["lr"]}
            logged.update({f"valid/{k}": v for k, v in valid.items() if k != "loss"})
            self.accelerator.log(logged, step=epoch)
        entry["seconds"] = seconds
        entry["valid_seconds"] = valid_seconds
        counters["history"].append(entry)
        counters["epoch"] = epoch
        if improved:
            self.best, self.best_valid = snapshot(self.refs), valid
            counters.update(best_epoch=epoch, best_metric=value, bad_epochs=0)
            if self.main:
                save_checkpoint(self.out_dir / BEST, self.best, {"epoch": epoch, "valid": valid}, kind="weights")
        else:
            counters["bad_epochs"] += 1
            patience = self.stage.early_stop_patience
            counters["stopped_early"] = patience is not None and counters["bad_epochs"] >= patience
        self.save()
        return (f"epoch {epoch}: train loss {train_loss:.4f}, valid loss {valid['loss']:.4f}, "
                f"valid {primary} {value:.4f}" + (" (best)" if improved else ""))
