"""The ``reference`` section of :mod:`benchmarks.speed`: promptkit's MulT against MMSA 2.2.1's, and
each training step against its roofline.

Both models are built with one configuration (:func:`benchmarks._mmsa_reference.mmsa_mult`), fed the
same batch and trained by the same step (forward, L1 loss, backward, Adam), timed in turn in one
process. The roofline of a step is its FLOPs at the run's dense-matmul rate plus the bytes its ops
read and write at the run's copy bandwidth: the time it would take if every op ran at the machine's
limit, so ``step / roofline`` says how far from it the step is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from backbones import create_backbone

from ._measure import autocast_for, count_bytes, count_flops, interleaved_medians, peak_memory
from ._mmsa_reference import VERSION, mmsa_models_dir, mmsa_mult
from ._speed_workloads import make_inputs, make_train_step

if TYPE_CHECKING:
    from .speed import SpeedConfig


def _roofline(fn, peak_flops: float, bandwidth: float) -> dict[str, float]:
    flops = sum(count_flops(fn).values())
    nbytes = count_bytes(fn)
    return {"flops": flops, "bytes": nbytes, "roofline_s": flops / peak_flops + nbytes / bandwidth}


def measure_reference(cfg: SpeedConfig, device: torch.device, shape: str, peak_flops: float,
                      bandwidth: float) -> dict[str, Any]:
    """One shape: ours and MMSA's train step and eval forward, their ratio, and each step's roofline.

    Without MMSA installed the row holds only ours and says what to install.
    """
    torch.manual_seed(cfg.seed)
    ours = create_backbone("mult", feature_dims=dict(cfg.feature_dims), **cfg.backbone_kwargs.get("mult", {})).to(device)
    inputs = make_inputs(cfg.feature_dims, cfg.shapes[shape], cfg.batch, device, cfg.seed)
    labels = torch.randn(cfg.batch, generator=torch.Generator().manual_seed(cfg.seed)).to(device)
    autocast = autocast_for(device, cfg.autocast)
    steps = {"ours": make_train_step(ours, lambda: ours(**inputs), labels, autocast)}
    forwards = {"ours": lambda: ours(**inputs)}
    row: dict[str, Any] = {"shape": shape, "lengths": dict(cfg.shapes[shape]), "batch": cfg.batch,
                           "config": {k: v for k, v in ours.config().items() if k != "feature_dims"}}
    if mmsa_models_dir() is not None:
        torch.manual_seed(cfg.seed)
        theirs = mmsa_mult(ours).to(device)
        args = [inputs["text"], inputs["audio"], inputs["vision"]]
        steps["mmsa"] = make_train_step(theirs, lambda: theirs(*args)["M"], labels, autocast)
        forwards["mmsa"] = lambda: theirs(*args)["M"]
        row["mmsa_version"] = VERSION
        row["params"] = {"ours": sum(p.numel() for p in ours.parameters()),
                         "mmsa": sum(p.numel() for p in theirs.parameters())}
    else:
        row["mmsa_missing"] = f"pip install --no-deps MMSA=={VERSION}"
    models = [ours] + ([theirs] if "mmsa" in steps else [])
    times = interleaved_medians(steps, cfg.repeats, cfg.warmup, device)
    row["train_step_s"] = {k: t["median_s"] for k, t in times.items()}
    for model in models:
        model.eval()
    with torch.no_grad():
        times = interleaved_medians(forwards, cfg.repeats, cfg.warmup, device)
    row["eval_forward_s"] = {k: t["median_s"] for k, t in times.items()}
    for model in models:
        model.train()
    detailed = {k: fn for k, fn in steps.items() if k == "ours" or cfg.reference_details}  # each costs two steps
    row["roofline"] = {k: _roofline(fn, peak_flops, bandwidth) for k, fn in detailed.items()}
    row["step_over_roofline"] = {k: row["train_step_s"][k] / r["roofline_s"] for k, r in row["roofline"].items()}
    row["peak_mib"] = {k: peak_memory(fn, device) / 2**20 for k, fn in detailed.items()}
    if "mmsa" in steps:
        row["train_ratio"] = row["train_step_s"]["ours"] / row["train_step_s"]["mmsa"]
        row["eval_ratio"] = row["eval_forward_s"]["ours"] / row["eval_forward_s"]["mmsa"]
    return row

