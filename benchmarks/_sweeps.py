"""What the sweep benchmarks (``table3``, ``figures fig6/fig7``) share: the recipe they start from,
running their grid through :func:`promptkit.experiment.sweep.run_sweep`, and reading ``sweep.csv`` back as
mean ± std over seeds of the six-case average."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from promptkit.experiment.pipeline import obtain_backbone
from promptkit.experiment.sweep import run_sweep, sweep_timing
from promptkit.recipes import Recipe, load_recipe_data

from ._common import mean_std
from .table1 import recipe_for

METRICS: dict[str, str] = {"acc7": "acc7", "acc": "non0_acc2", "f1": "non0_f1", "mae": "mae", "corr": "corr"}
"""Column name → protocol metric key; acc and F1 are the binary ones on non-zero labels (MOSI)."""
PERCENT = ("acc7", "acc", "f1")


def base_recipe(backbone: str = "mult", *, quick: bool = False, full: bool = False) -> Recipe:
    """Table 1's recipe (the ``<backbone>-synth`` transfer setting at CPU size, ``quick`` or
    ``full``), scored on the six fixed cases and complete data only (no missing-rate sweep)."""
    recipe = recipe_for(backbone, 0, quick=quick, full=full)
    return recipe.replace(eval=dataclasses.replace(recipe.eval, missing_rates=[]))


def add_common_args(p: argparse.ArgumentParser, work: str) -> None:
    p.add_argument("--backbone", default="mult")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--jobs", type=int, default=2, help="grid cells run in this many processes")
    p.add_argument("--quick", action="store_true", help="tiny sizes: the code path, no figures")
    p.add_argument("--full", action="store_true", help="the recipe's own sizes and epochs (for a GPU)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--work", type=Path, default=Path(work))
    p.add_argument("--quiet", action="store_true")


def setting_name(args: argparse.Namespace) -> str:
    return "quick" if args.quick else "full" if args.full else "cpu"


def run_grid(args: argparse.Namespace, axes: dict[str, list[Any]],
             method: str = "mplmm") -> tuple[list[dict[str, str]], str]:
    """Run (or resume) the grid of ``axes`` × ``args.seeds`` training ``method``: the rows of its
    ``sweep.csv`` and the description of the data the cells ran on. Each setting (cpu / quick /
    full) has its own sweep directory under ``args.work``; ``args.timing`` is set to the sweep's
    wall time, summed over the invocations that ran cells (so a read-back run reports the time the
    cells took, not its own seconds)."""
    recipe = base_recipe(args.backbone, quick=args.quick, full=args.full)
    out = args.work / args.backbone / setting_name(args)
    if recipe.pretrain.checkpoint is None:  # --quick: every cell would pre-train the same backbone; do it once
        shared, _ = obtain_backbone(recipe, load_recipe_data(recipe), out, device=args.device, resume=True,
                                    progress=False)
        recipe = recipe.replace(pretrain=dataclasses.replace(recipe.pretrain, checkpoint=str(shared.resolve())))
    path = run_sweep(recipe, axes, args.seeds, out, methods=[method], jobs=args.jobs, device=args.device,
                     progress=not args.quiet)
    log = sweep_timing(out)
    args.timing = {"seconds": sum(t["seconds"] for t in log), "invocations": log}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    first = json.loads((out / "cells" / rows[0]["cell"] / "protocol.json").read_text())
    return rows, first["data"]


def summarize(rows: Sequence[dict[str, str]], axes: Sequence[str], *, method: str = "mplmm",
              setting: str = "avg") -> dict[tuple[str, ...], dict[str, Any]]:
    """Per grid point (axis values as written in the CSV): each metric of :data:`METRICS` at
    ``setting``, per seed and mean ± std over seeds (acc7/acc/F1 in percent)."""
    per: dict[tuple[str, ...], dict[str, dict[int, float]]] = {}
    keys = {v: k for k, v in METRICS.items()}
    for r in rows:
        if r["method"] != method or r["setting"] != setting or r["metric"] not in keys:
            continue
        name = keys[r["metric"]]
        scale = 100.0 if name in PERCENT else 1.0
        per.setdefault(tuple(r[a] for a in axes), {}).setdefault(name, {})[int(r["seed"])] = scale * float(r["value"])
    out: dict[tuple[str, ...], dict[str, Any]] = {}
    for point, metrics in per.items():
        out[point] = {}
        for name, by_seed in metrics.items():
            seeds = sorted(by_seed)
            mean, std = mean_std([by_seed[s] for s in seeds])
            out[point][name] = {"mean": mean, "std": std, "seeds": seeds, "per_seed": [by_seed[s] for s in seeds]}
    return out


def paired_over_seeds(a: dict[str, Any], b: dict[str, Any], metric: str = "acc") -> dict[str, float]:
    """``a − b`` of one metric, paired by seed (same masks and samples within a seed): mean and SE
    over the seeds both have."""
    pa, pb = dict(zip(a[metric]["seeds"], a[metric]["per_seed"])), dict(zip(b[metric]["seeds"], b[metric]["per_seed"]))
    diffs = [pa[s] - pb[s] for s in sorted(set(pa) & set(pb))]
    mean, std = mean_std(diffs)
    return {"mean": mean, "se": std / len(diffs) ** 0.5 if len(diffs) > 1 else 0.0, "n": len(diffs)}


def measured_time(args: argparse.Namespace, wall: float) -> dict[str, Any]:
    """``seconds`` and ``jobs`` for a payload: the sweep's own wall time (summed over the invocations
    that ran its cells) and their process counts; ``wall`` and ``args.jobs`` if none is logged."""
    log = getattr(args, "timing", {}).get("invocations", [])
    if not log:
        return {"seconds": wall, "jobs": args.jobs}
    jobs = sorted({t["jobs"] for t in log})
    return {"seconds": sum(t["seconds"] for t in log), "jobs": jobs[0] if len(jobs) == 1 else jobs,
            "invocations": log}
