"""CGGM against plain training on deliberately imbalanced synthetic data (NOT CMU-MOSI).

    python -m benchmarks.cggm [--device cpu] [--seeds 3] [--epochs 10] [--backbone mult] [--quick]

The data: :func:`promptkit.data.make_synthetic_mosi` (seed 0, aligned) and then, in every split,
one modality (``--easy``, default audio) gets a strong, clean copy of the label added on all its
valid (non-padding) time steps, along one fixed random unit direction ``u`` of its feature space::

    x_easy[n, t] += strength * (y_n + noise * sd(y) * e_n) / sd(y) * u      e_n ~ N(0, 1)

A 5-d, time-constant, linear cue is learned in a few steps; the text modality (the generator's
informative one) needs hundreds of noisy dimensions. ``noise`` keeps the cue imperfect (its
correlation with y is 1/sqrt(1 + noise^2)), so a model that leans on the easy modality alone
loses accuracy that the others could add.

Per seed (the training seed: backbone init, shuffling, dropout, CGGM classifiers; the data stay
fixed) the backbone trains twice through :func:`promptkit.train.pretrain`, the stage behind
``promptkit train``: once plain, once with ``cggm=True`` (the ``[cggm]`` defaults). Both keep
the best-validation epoch and report the test split.

Unimodal accuracy, the same probe for both runs: the trained backbone in eval mode; each
modality's encoder output (``HookSpec.encoders[m]``, read out as ``(N, D)``) on the three splits;
a ridge regression on the standardised train outputs (closed form, penalty chosen on the valid
split's sign accuracy from a fixed grid); reported: sign accuracy on the test split's non-zero
labels. The CGGM run also records its own classifiers' test accuracy (last epoch's classifiers
on the best epoch's encoders) in the JSON.

Writes ``cggm.json``, ``cggm.csv`` and ``cggm_coefficients.png`` (B_m and the classifiers' batch
accuracy over the training steps) under ``benchmarks/results/`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import tempfile
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmarks._common import (
    RESULTS_DIR,
    machine_info,
    mean_std,
    write_csv,
    write_json,
    write_png,
)
from promptkit.backbone_files import load_backbone
from promptkit.cggm import CGGM, CGGMConfig, read_out
from promptkit.checkpoint import load_checkpoint, take_prefix
from promptkit.data import make_loader, make_synthetic_mosi
from promptkit.data.dataset import DataBundle, MSADataset
from promptkit.hookspec import HookSpec, hook_spec_for, resolve_module
from promptkit.plugins import TrainPlugin
from promptkit.recipes import from_dict
from promptkit.train import pretrain

METRICS: tuple[str, ...] = ("mae", "non0_acc2", "non0_f1", "corr")
RUNS: tuple[str, ...] = ("plain", "cggm")
PROBE_PENALTIES: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)  # × N_train

# CPU-sized backbone settings (keywords of backbones.create_backbone); quick: test-sized
BACKBONES: dict[str, dict[str, Any]] = {
    "mult": {"d_model": 30, "num_heads": 5, "layers": 2},
    "misa": {},
    "mmim": {},
    "unimse": {},
}
QUICK_BACKBONES: dict[str, dict[str, Any]] = {"mult": {"d_model": 10, "num_heads": 2, "layers": 1}}


@dataclasses.dataclass
class Settings:
    """One benchmark run's settings (all recorded in the JSON)."""

    backbone: str = "mult"
    seeds: int = 3
    epochs: int = 10
    device: str = "cpu"
    threads: int = 1
    sizes: tuple[int, int, int] = (768, 256, 768)
    seq_len: int = 12
    batch_size: int = 32
    lr: float = 1e-3
    easy: str = "audio"
    strength: float = 2.0
    noise: float = 0.75
    data_seed: int = 0
    quick: bool = False

    @classmethod
    def quick_settings(cls, **kw: Any) -> Settings:
        return cls(**{"seeds": 1, "epochs": 1, "sizes": (48, 16, 32), "seq_len": 4, "batch_size": 16,
                      "lr": 1e-2, "quick": True, **kw})


# --- data -------------------------------------------------------------------------------------------
def imbalance_note(s: Settings) -> str:
    """The exact change made to the generator's output, for titles and the JSON."""
    return (f"{s.easy} += {s.strength:g}·(y + {s.noise:g}·sd(y)·e)/sd(y)·u on valid steps "
            f"(u a fixed unit direction, e ~ N(0,1) per sample)")


def make_imbalanced_data(s: Settings) -> DataBundle:
    """The synthetic set with one modality made easy on purpose (see the module docstring).

    Returns:
        a regression ``DataBundle``; ``description`` says synthetic and how it was changed.
    """
    # generator v1: the committed cggm*.json figures were measured on it (v2 changes the modalities'
    # balance on purpose, which this benchmark sets itself)
    data = make_synthetic_mosi(seed=s.data_seed, aligned=True, sizes=s.sizes, version=1,
                               seq_lens={m: s.seq_len for m in ("text", "audio", "vision")})
    if s.easy not in data.modalities:
        raise ValueError(f"--easy must be one of {list(data.modalities)}, got {s.easy!r}")
    rng = np.random.default_rng([s.data_seed, 7])
    u = rng.standard_normal(data.feature_dims[s.easy])
    u /= np.linalg.norm(u)
    sd = float(data.splits["train"].labels.std())
    splits = {}
    for i, (name, ds) in enumerate(data.splits.items()):
        y = ds.labels.numpy().astype(np.float64)
        e = np.random.default_rng([s.data_seed, 11, i]).standard_normal(len(y))
        cue = s.strength * (y + s.noise * sd * e) / sd  # (N,)
        feats = {m: ds.features[m].clone() for m in ds.modalities}
        x = feats[s.easy]  # (N, T, D)
        valid = (x.abs().sum(-1, keepdim=True) > 0).float()  # (N, T, 1): the generator pads with exact zeros
        x += valid * torch.from_numpy(np.outer(cue, u)).float()[:, None, :]
        splits[name] = MSADataset(feats, ds.labels, modalities=ds.modalities)
    return dataclasses.replace(
        data, splits=splits, name="synthetic-mosi-imbalanced",
        description=f"{data.description}; imbalanced on purpose: {imbalance_note(s)}",
        info={**data.info, "imbalance": {"modality": s.easy, "strength": s.strength, "noise": s.noise}},
    )


# --- probes -----------------------------------------------------------------------------------------
@torch.no_grad()
def encoder_outputs(model: nn.Module, spec: HookSpec, dataset: MSADataset, device: torch.device,
                    batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Each modality's encoder output over a split, eval mode: modality → ``(N, D_m)`` on the CPU."""
    captured: dict[str, list[torch.Tensor]] = {m: [] for m in spec.modalities}

    def hook(m: str):
        enc = spec.encoders[m]
        return lambda module, args, out: captured[m].append(read_out(out, enc.layout, enc.output).float().cpu())

    handles = [resolve_module(model, spec.encoders[m].output).register_forward_hook(hook(m)) for m in spec.modalities]
    model.eval()
    try:
        for batch in make_loader(dataset, batch_size):
            model(**spec.kwargs({m: batch[m].to(device) for m in spec.modalities}))
    finally:
        for h in handles:
            h.remove()
    return {m: torch.cat(v) for m, v in captured.items()}


def sign_accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    """Binary accuracy on the non-zero labels (MOSI's non0_acc2)."""
    nz = y != 0
    return float(((pred > 0) == (y > 0))[nz].mean())


def ridge_probe(train: tuple[np.ndarray, np.ndarray], valid: tuple[np.ndarray, np.ndarray],
                test: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
    """Linear probe: ridge on standardised ``(N, D)`` features; penalty by valid sign accuracy.

    Returns:
        ``{"test_acc", "valid_acc", "penalty"}``.
    """
    x, y = train
    mu, sd = x.mean(0), x.std(0) + 1e-8
    z = (x - mu) / sd
    gram, rhs, y0 = z.T @ z, z.T @ (y - y.mean()), y.mean()
    best: tuple[float, float, np.ndarray] | None = None
    for lam in PROBE_PENALTIES:
        w = np.linalg.solve(gram + lam * len(y) * np.eye(len(gram)), rhs)
        acc = sign_accuracy(((valid[0] - mu) / sd) @ w + y0, valid[1])
        if best is None or acc > best[0]:
            best = (acc, lam, w)
    acc, lam, w = best
    return {"test_acc": sign_accuracy(((test[0] - mu) / sd) @ w + y0, test[1]), "valid_acc": acc, "penalty": lam}


def probe_modalities(model: nn.Module, data: DataBundle, device: torch.device) -> dict[str, dict[str, float]]:
    """:func:`ridge_probe` on every modality's frozen encoder output; modality → its result."""
    spec = hook_spec_for(model)
    feats = {split: encoder_outputs(model, spec, data.splits[split], device) for split in ("train", "valid", "test")}
    labels = {split: data.splits[split].labels.numpy().astype(np.float64) for split in feats}
    splits = ("train", "valid", "test")
    return {
        m: ridge_probe(*[(feats[split][m].numpy().astype(np.float64), labels[split]) for split in splits])
        for m in spec.modalities
    }


# --- training ---------------------------------------------------------------------------------------
class _EpochTicker(TrainPlugin):
    """Advances a rich progress task once per epoch (no effect on training)."""

    def __init__(self, progress: Any, task: Any) -> None:
        self.progress, self.task = progress, task

    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        self.progress.advance(self.task)
        return {}


def recipe_for(s: Settings, seed: int):
    config = (QUICK_BACKBONES if s.quick else BACKBONES).get(s.backbone, {})
    return from_dict({
        "name": f"cggm-benchmark-{s.backbone}",
        "backbone": {"name": s.backbone, "config": config},
        "pretrain": {"epochs": s.epochs, "batch_size": s.batch_size, "lr": s.lr, "seed": seed, "scheduler": "none"},
        "cggm": {"seed": seed},
    })


def train_one(s: Settings, data: DataBundle, seed: int, use_cggm: bool, out_dir: Path, device: torch.device,
              ticker: TrainPlugin) -> dict[str, Any]:
    """Train once; the test metrics, the probes and (CGGM) the B history and classifier accuracy."""
    t0 = time.perf_counter()
    recipe = recipe_for(s, seed)
    result = pretrain(recipe, data, out_dir, cggm=use_cggm, plugins=[ticker], device=device, progress=False,
                      overwrite=True)
    seconds = time.perf_counter() - t0
    model = load_backbone(out_dir / "backbone.safetensors", device=device, recipe=recipe)
    out: dict[str, Any] = {
        "seed": seed, "seconds": seconds, "best_epoch": result.best_epoch,
        "test": {k: result.test[k] for k in METRICS}, "probe": probe_modalities(model, data, device),
    }
    if use_cggm:
        tensors, meta = load_checkpoint(out_dir / "last.safetensors", kind="train-state")
        index = [p["type"] for p in meta["plugins"]].index("CGGM")
        plugin_meta = meta["plugins"][index]["meta"]
        plugin = CGGM(model, None, CGGMConfig.from_dict(plugin_meta["config"]))
        plugin.load_state_dict(take_prefix(tensors, f"plugin.{index}."), plugin_meta)
        out["classifier_test_acc"] = plugin.unimodal_accuracy(make_loader(data.splits["test"], 256))
        out["history"] = {"B": plugin_meta["history"]["B"], "acc": plugin_meta["history"]["acc"]}
        out["epoch_B"] = [{m: h[f"B_{m}"] for m in data.modalities} for h in result.history]
        plugin.remove()
    return out


# --- summary, table, plot ---------------------------------------------------------------------------
def summary_rows(runs: dict[str, list[dict[str, Any]]], modalities: Sequence[str]) -> list[dict[str, Any]]:
    """One row per quantity: ``{"quantity", "plain": (mean, sd, values), "cggm": ...}``."""
    keys = [(f"test {k}", lambda r, k=k: r["test"][k]) for k in METRICS]
    keys += [(f"probe acc {m}", lambda r, m=m: r["probe"][m]["test_acc"]) for m in modalities]
    rows = []
    for name, get in keys:
        row: dict[str, Any] = {"quantity": name}
        for run in RUNS:
            values = [get(r) for r in runs[run]]
            row[run] = (*mean_std(values), values)
        rows.append(row)
    return rows


def print_table(rows: list[dict[str, Any]], title: str, caption: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, caption=caption)
    for col in ("quantity", "no CGGM", "CGGM", "Δ (CGGM − plain)"):
        table.add_column(col, justify="left" if col == "quantity" else "right")
    for row in rows:
        scale = 1.0 if row["quantity"].endswith(("mae", "corr")) else 100.0
        cells = [f"{scale * row[r][0]:.2f} ± {scale * row[r][1]:.2f}" for r in RUNS]
        table.add_row(row["quantity"] + ("" if scale == 1.0 else " (%)"), *cells,
                      f"{scale * (row['cggm'][0] - row['plain'][0]):+.2f}")
    Console(width=max(Console().width, 110)).print(table)


def _smooth(x: np.ndarray, window: int) -> np.ndarray:
    """Moving average that ignores NaN (steps where nothing was scored)."""
    if window <= 1:
        return x
    ok = np.isfinite(x)
    kernel = np.ones(window)
    num = np.convolve(np.where(ok, x, 0.0), kernel, mode="same")
    den = np.convolve(ok.astype(float), kernel, mode="same")
    return np.where(den > 0, num / np.maximum(den, 1), np.nan)


def plot_coefficients(path: Path, cggm_runs: list[dict[str, Any]], modalities: Sequence[str], steps_per_epoch: int,
                      title: str) -> None:
    """PNG: B_m (top) and the classifiers' batch accuracy ε_m (bottom) against the training step;
    thin: each seed, thick: the seed mean smoothed over one epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    colors = dict(zip(modalities, ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")))
    panels = ((axes[0], "B", "B_m (clipped to [0, b_max])"), (axes[1], "acc", "classifier batch accuracy ε_m"))
    for ax, key, label in panels:
        for m in modalities:
            series = np.array([[np.nan if v is None else v for v in r["history"][key][m]] for r in cggm_runs],
                              dtype=float)  # (seeds, steps)
            steps = np.arange(1, series.shape[1] + 1)
            for row in series:
                ax.plot(steps, row, color=colors[m], alpha=0.12, linewidth=0.6)
            with np.errstate(invalid="ignore"):
                mean = np.nanmean(series, axis=0) if len(series) > 1 else series[0]
            ax.plot(steps, _smooth(mean, steps_per_epoch), color=colors[m], linewidth=2, label=m)
        ax.set_ylabel(label, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    axes[0].legend(fontsize=8, ncol=len(modalities))
    axes[1].set_xlabel(f"training step ({steps_per_epoch} per epoch)")
    fig.suptitle(textwrap.fill(title, 110), fontsize=8)
    fig.tight_layout()
    write_png(path, fig, dpi=110)


def result_stem(backbone: str) -> str:
    """``cggm`` for the default backbone (mult), ``cggm_<backbone>`` for the others."""
    return "cggm" if backbone == "mult" else f"cggm_{backbone}"


# --- main ---------------------------------------------------------------------------------------------
def run_benchmark(s: Settings, out_dir: Path = RESULTS_DIR, progress: bool = True) -> dict[str, Any]:
    """Train every (seed, with/without CGGM) pair, probe, write the files; returns the JSON payload."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from promptkit.train.device import resolve_device

    if s.seeds < 1 or s.epochs < 1:
        raise ValueError(f"--seeds and --epochs must be >= 1, got {s.seeds} and {s.epochs}")
    import backbones

    if not backbones.is_backbone(s.backbone):
        raise ValueError(f"unknown backbone {s.backbone!r}; known: {backbones.list_backbones()}")
    device = resolve_device(s.device)
    if device.type == "cpu":
        torch.set_num_threads(s.threads)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    data = make_imbalanced_data(s)
    runs: dict[str, list[dict[str, Any]]] = {r: [] for r in RUNS}
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, disable=not progress) as bar, tempfile.TemporaryDirectory(prefix="cggm-bench-") as tmp:
        total = bar.add_task("all runs (epochs)", total=s.seeds * len(RUNS) * s.epochs)
        for seed in range(s.seeds):
            for run in RUNS:
                bar.update(total, description=f"seed {seed + 1}/{s.seeds}, {run:5s} (epochs)")
                result = train_one(s, data, seed, run == "cggm", Path(tmp) / f"{run}-{seed}", device,
                                   _EpochTicker(bar, total))
                runs[run].append(result)
    seconds = time.perf_counter() - t0
    load_after = os.getloadavg()

    rows = summary_rows(runs, data.modalities)
    spe = math.ceil(s.sizes[0] / s.batch_size)
    title = (f"CGGM vs plain training, {s.backbone}, {s.seeds} seed(s) × {s.epochs} epoch(s), test split; "
             f"data: SYNTHETIC, imbalanced on purpose (NOT CMU-MOSI): {imbalance_note(s)}")
    caption = ("mean ± sd over seeds; probe acc = ridge probe on the frozen encoder output, same for both runs; "
               f"{seconds:.0f} s on {device} ({s.threads} thread(s)), "
               f"load average {load_before[0]:.1f} → {load_after[0]:.1f}")
    out_dir, stem = Path(out_dir), result_stem(s.backbone)
    payload = {
        "benchmark": "cggm",
        "data": data.description,
        "settings": dataclasses.asdict(s),
        "backbone_config": (QUICK_BACKBONES if s.quick else BACKBONES).get(s.backbone, {}),
        "cggm_config": CGGMConfig().to_dict() | {"seed": "= training seed"},
        "probe": {"kind": "ridge on standardised encoder outputs (eval mode)",
                  "penalties_times_n_train": list(PROBE_PENALTIES),
                  "selected_by": "valid sign accuracy", "reported": "test sign accuracy on non-zero labels"},
        "machine": machine_info(device) | {"load_average_before": load_before, "load_average_after": load_after},
        "seconds": seconds,
        "summary": {r["quantity"]: {run: {"mean": r[run][0], "std": r[run][1], "values": r[run][2]} for run in RUNS}
                    for r in rows},
        "runs": runs,
    }
    write_json(out_dir / f"{stem}.json", payload)
    write_csv(out_dir / f"{stem}.csv", ["quantity", "run", "mean", "std", "values"],
              [[r["quantity"], run, f"{r[run][0]:.6f}", f"{r[run][1]:.6f}", ";".join(f"{v:.6f}" for v in r[run][2])]
               for r in rows for run in RUNS])
    plot_coefficients(out_dir / f"{stem}_coefficients.png", runs["cggm"], data.modalities, spe,
                      f"CGGM on {s.backbone}, synthetic imbalanced data (NOT CMU-MOSI): {imbalance_note(s)}")
    if progress:
        print_table(rows, title, caption)
        print(f"wrote {out_dir / stem}.json, .csv and {stem}_coefficients.png ({seconds:.0f} s)")
    return payload


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.cggm", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument("--seeds", type=int, default=None, help="training seeds 0..N-1 (default 3; quick: 1)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per run (default 10; quick: 1)")
    p.add_argument("--backbone", default="mult", help="registered backbone (default mult)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: on this shared 2-core machine 2 threads ran 15-60x slower per step)")
    p.add_argument("--easy", default="audio", help="the modality made easy on purpose (default audio)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help=f"where the results go (default {RESULTS_DIR})")
    p.add_argument("--quick", action="store_true", help="tiny sizes for a smoke test (seconds)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or table")
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    given = {k: v for k, v in {"seeds": args.seeds, "epochs": args.epochs}.items() if v is not None}
    common = dict(backbone=args.backbone, device=args.device, threads=args.threads, easy=args.easy, **given)
    s = Settings.quick_settings(**common) if args.quick else Settings(**common)
    return run_benchmark(s, args.out, progress=not args.quiet)


if __name__ == "__main__":
    main()
