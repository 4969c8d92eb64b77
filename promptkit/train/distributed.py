"""The processes of one run: accelerate's ``Accelerator``, sharded data, gathered predictions.

One process or several (``torchrun --nproc_per_node N`` or ``accelerate launch --multi_gpu
--num_processes N``; gloo on CPU, nccl on GPUs), the same code runs:

- **one global batch.** ``batch_size`` in a recipe is the *global* batch: accelerate splits each
  batch of the seeded loader across the processes (``split_batches``), so N processes take the
  same optimisation steps as one (up to float reduction order and per-process dropout draws);
  ``batch_size`` must be divisible by N;
- **masks by sample.** A stage's missing-modality masks are drawn for the whole split from
  ``(seed, epoch)`` and picked by each sample's index, so they do not depend on the batching or
  on N;
- **gathered evaluation.** Every process scores its shard; predictions and labels are gathered
  with ``gather_for_metrics`` (the padding accelerate adds to uneven shards is dropped), so every
  process computes the same metrics on every sample exactly once and takes the same decisions
  (best epoch, early stopping, the plateau scheduler);
- **one writer.** Only the main process writes checkpoints, results, logs and plots and prints.

A process that dies makes the others fail at their next collective after ``PROMPTKIT_DDP_TIMEOUT``
seconds (default 600) instead of hanging; torchrun also stops the group when one process exits with
an error.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from accelerate import (
    Accelerator,
    DataLoaderConfiguration,
    DistributedDataParallelKwargs,
    InitProcessGroupKwargs,
)
from accelerate.state import AcceleratorState
from accelerate.utils import ProjectConfiguration

TIMEOUT_ENV = "PROMPTKIT_DDP_TIMEOUT"


def world_size() -> int:
    """Number of processes of this run (1 without a launcher)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """True in the process that writes files and prints (rank 0, or the only process)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def barrier() -> None:
    """Wait for every process (a no-op in a single process)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """The main process runs the block (e.g. writes a file) before the others enter it."""
    if not is_main_process():
        barrier()
    try:
        yield
    finally:
        if is_main_process():
            barrier()


def make_accelerator(
    device: torch.device, *, log_with: Sequence[Any] = (), project_dir: Path | None = None,
    find_unused_parameters: bool = False,
):
    """accelerate's Accelerator for one ``fit``: bf16 autocast on a GPU that supports it, float32 on
    CPU; each global batch split across processes; a timeout on collectives. A prompter needs
    ``find_unused_parameters``: a step whose batch has no sample of some case leaves that case's
    prompts without a gradient."""
    cpu = device.type == "cpu"
    mixed = "bf16" if not cpu and torch.cuda.is_bf16_supported() else "no"
    timeout = timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, "600")))
    project = ProjectConfiguration(project_dir=str(project_dir), logging_dir=str(project_dir / "logs")) \
        if project_dir is not None else None
    kwargs = dict(
        cpu=cpu, mixed_precision=mixed, log_with=list(log_with) or None, project_config=project,
        dataloader_config=DataLoaderConfiguration(split_batches=True, even_batches=True),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=find_unused_parameters),
                         InitProcessGroupKwargs(timeout=timeout)],
    )
    try:
        return Accelerator(**kwargs)
    except ValueError:  # an earlier fit in this (single) process set other precision/device settings
        if world_size() > 1:
            raise
        AcceleratorState._reset_state(reset_partial_state=True)
        return Accelerator(**kwargs)


def check_process_split(batch_size: int, num_processes: int, splits: dict[str, Any]) -> None:
    """Refuse a global batch or a split that cannot be shared by ``num_processes`` processes."""
    if num_processes <= 1:
        return
    if batch_size % num_processes:
        raise ValueError(
            f"batch_size {batch_size} is the global batch and must be divisible by the {num_processes} processes; "
            f"use a multiple of {num_processes} or another process count"
        )
    for name, split in splits.items():
        if len(split) < num_processes:
            raise ValueError(
                f"the {name} split has {len(split)} sample(s), fewer than the {num_processes} processes; "
                "run with fewer processes"
            )


def epoch_masks(mask_fn: Any, dataset: Any, epoch: int, generator: torch.Generator) -> torch.Tensor:
    """One mask per sample of ``dataset`` ``(N, M)``, drawn once: ``mask_fn`` sees a batch that
    holds the whole split's labels and indices; each batch then takes its rows by ``index``."""
    n = len(dataset)
    whole = {"labels": dataset.labels, "index": torch.arange(n)}
    masks = mask_fn(whole, epoch, generator)
    if masks.shape[0] != n:
        raise ValueError(f"mask_fn returned {masks.shape[0]} masks for a split of {n} samples")
    return masks
