"""``python -m benchmarks.figures``: the paper's Figures 4, 6 and 7 on the embedded data.

- ``fig4``: every method of Table 1 (default: MCTN, MMIN, MPMM and MPLMM, the paper's four) over
  the test missing rate 10..100 % — a sample is incomplete with that probability and then gets one
  of the six incomplete cases uniformly, masks drawn once per rate from a fixed seed, the same for
  every method and seed. Four panels: ACC, F1, MAE, Corr. Read from ``table1.json`` (the same
  trained models as Table 1); when it lacks the methods or the rates, Table 1 is run for them.
- ``fig6``: the training missing rate eta ∈ {0.1, ..., 0.9} of the prompt stage (the paper: best
  at 0.7), one ``promptkit sweep`` grid.
- ``fig7``: the prompt length ∈ {1, 2, 4, 8, 16, 32, 64} (the paper: best at 16), a sweep too.

Fig. 6 and 7 score the six-case average on the test split (ACC and F1 on non-zero labels, MAE,
Corr); each gives its optimum per seed and of the mean, and the values within one SE of the best,
beside the paper's. Every curve is the mean over training seeds with a ± std band. PNG, JSON and CSV
land in ``benchmarks/results/`` (``fig4.*``, ``fig6.*``, ``fig7.*``). Synthetic data, NOT CMU-MOSI.

    python -m benchmarks.figures fig6 fig7          # CPU-sized defaults, resumable
    python -m benchmarks.figures fig4 --quick --seeds 0
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from promptkit.reference import FIG6_BEST_ETA, FIG7_BEST_PROMPT_LENGTH

from . import _sweeps
from ._common import RESULTS_DIR, machine_info, write_csv, write_json

FIG4_METHODS = ("mctn", "mmin", "mpmm", "mplmm")
ETAS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
LENGTHS = [1, 2, 4, 8, 16, 32, 64]
PANELS = {"acc": "ACC (%)", "f1": "F1 (%)", "mae": "MAE (lower is better)", "corr": "Corr"}


# --- Fig. 4: methods over the test missing rate ---------------------------------------------------
def fig4(args: argparse.Namespace) -> dict[str, Any]:
    """Each method's rate sweep from ``table1.json`` (run Table 1 for what it lacks)."""
    from . import table1

    path = args.out / "table1.json"
    methods = list(args.methods or FIG4_METHODS)
    summary = _table1_rates(path, args.backbone, methods, args)
    if summary is None:
        argv = ["--backbones", args.backbone, "--seeds", *map(str, args.seeds), "--methods", *methods,
                "--jobs", str(args.jobs), "--device", args.device, "--work", str(args.table1_work), "--out", str(args.out / "fig4-table1")]
        payload = table1.main(argv + (["--quick"] if args.quick else []) + (["--full"] if args.full else [])
                              + ["--quiet"])
        path = args.out / "fig4-table1" / "table1.json"
        summary = payload["backbones"][args.backbone]
        data, seeds = payload["data"], payload["seeds"]
    else:
        saved = json.loads(path.read_text())
        data, seeds = saved["data"], saved["seeds"]
    curves = {m: {float(r): v for r, v in summary[m]["rates"].items()} for m in methods}
    label = f"{args.backbone}, {data}"
    _plot_rates(args.out / "fig4.png", curves, label, seeds)
    payload = {"figure": 4, "backbone": args.backbone, "from": str(path), "data": data, "seeds": seeds,
               "curves": {m: {str(r): v for r, v in c.items()} for m, c in curves.items()}}
    write_csv(args.out / "fig4.csv", ["method", "rate", "metric", "mean", "std"],
              [[m, r, k, v[k]["mean"], v[k]["std"]] for m, c in curves.items() for r, v in sorted(c.items())
               for k in PANELS])
    return payload


def _table1_rates(path: Path, backbone: str, methods: Sequence[str], args: argparse.Namespace) -> dict | None:
    """Table 1's summary of ``backbone`` when ``path`` has every method with rates, the seeds
    and the setting asked for; else None."""
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    summary = saved.get("backbones", {}).get(backbone, {})
    setting = "quick" if args.quick else "full" if args.full else "cpu"
    if saved.get("setting") != setting or saved.get("seeds") != list(args.seeds):
        return None
    if not all(m in summary and summary[m].get("rates") for m in methods):
        return None
    return summary


def _plot_rates(path: Path, curves: dict[str, dict[float, dict]], label: str, seeds: Sequence[int]) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.8))
    for ax, (key, ylabel) in zip(axes, PANELS.items()):
        for m, c in curves.items():
            rates = sorted(c)
            mean = [c[r][key]["mean"] for r in rates]
            std = [c[r][key]["std"] for r in rates]
            ax.plot([100 * r for r in rates], mean, marker="o", ms=3, label=m)
            ax.fill_between([100 * r for r in rates], [a - b for a, b in zip(mean, std)],
                            [a + b for a, b in zip(mean, std)], alpha=0.15)
        ax.set_xlabel("test missing rate (%)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Fig. 4 — methods over the test missing rate; mean ± std over seeds {list(seeds)}\n{label}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


# --- Fig. 6 and 7: one setting of the prompt stage swept ------------------------------------------
def setting_curve(args: argparse.Namespace, figure: int, key: str, values: list[Any], paper_best: Any,
                  xlabel: str, log2: bool = False) -> dict[str, Any]:
    """Sweep ``key`` over ``values``; the six-case average per value (mean ± std over seeds), the
    optimum of the mean and per seed, and the values within one SE (over seeds) of the best."""
    rows, data = _sweeps.run_grid(args, {key: values})
    points = _sweeps.summarize(rows, [key])
    curve = {v: points[(json.dumps(v),)] for v in values if (json.dumps(v),) in points}
    best = max(curve, key=lambda v: curve[v]["acc"]["mean"])
    top = curve[best]["acc"]
    se = top["std"] / len(top["per_seed"]) ** 0.5 if len(top["per_seed"]) > 1 else 0.0
    near = [v for v in curve if curve[v]["acc"]["mean"] >= top["mean"] - se]
    per_seed = {s: max(curve, key=lambda v: dict(zip(curve[v]["acc"]["seeds"], curve[v]["acc"]["per_seed"]))[s])
                for s in top["seeds"]}
    optimum = {"best_of_mean": best, "within_one_se_of_best": near, "best_per_seed": per_seed,
               "paper_best": paper_best, "acc_at_paper_best": curve.get(paper_best, {}).get("acc")}
    label = f"{args.backbone}, {data}"
    _plot_setting(args.out / f"fig{figure}.png", curve, figure, xlabel, label, args.seeds, paper_best, best, log2)
    payload = {"figure": figure, "key": key, "backbone": args.backbone, "data": data, "seeds": args.seeds,
               "setting": _sweeps.setting_name(args), "curve": {json.dumps(v): c for v, c in curve.items()},
               "optimum": optimum}
    write_csv(args.out / f"fig{figure}.csv", [key, "metric", "mean", "std", "per_seed"],
              [[v, k, c[k]["mean"], c[k]["std"], " ".join(f"{x:.4f}" for x in c[k]["per_seed"])]
               for v, c in curve.items() for k in PANELS])
    return payload


def _plot_setting(path: Path, curve: dict[Any, dict], figure: int, xlabel: str, label: str, seeds: Sequence[int],
                  paper_best: Any, best: Any, log2: bool) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.8))
    xs = list(curve)
    for ax, (key, ylabel) in zip(axes, PANELS.items()):
        mean = [curve[v][key]["mean"] for v in xs]
        std = [curve[v][key]["std"] for v in xs]
        ax.plot(xs, mean, marker="o", ms=4, color="C0", label="ours (mean ± std)")
        ax.fill_between(xs, [a - b for a, b in zip(mean, std)], [a + b for a, b in zip(mean, std)], alpha=0.2)
        ax.axvline(paper_best, color="C3", ls="--", lw=1, label=f"paper's best ({paper_best}, CMU-MOSI)")
        ax.axvline(best, color="C2", ls=":", lw=1.2, label=f"our best mean ACC ({best})")
        if log2:
            ax.set_xscale("log", base=2)
            ax.set_xticks(xs, [str(v) for v in xs])
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Fig. {figure} — six-case average vs {xlabel}; seeds {list(seeds)}\n{label}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _print_optimum(payload: dict[str, Any]) -> None:
    o = payload["optimum"]
    print(f"Fig. {payload['figure']} ({payload['key']}): best mean ACC at {o['best_of_mean']}; within one SE: "
          f"{o['within_one_se_of_best']}; per seed {o['best_per_seed']}; the paper's best: {o['paper_best']}")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.figures", description=__doc__.split("\n\n")[0])
    p.add_argument("figures", nargs="+", choices=["fig4", "fig6", "fig7"])
    _sweeps.add_common_args(p, "runs/figures")
    p.add_argument("--methods", nargs="+", default=None, help=f"fig4's methods (default {list(FIG4_METHODS)})")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="where table1.json is read and figures written")
    p.add_argument("--table1-work", type=Path, default=Path("runs/table1"))
    p.add_argument("--values", default=None, help="fig6/fig7: the swept values instead of the paper's grid (0.3,0.7)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    done: dict[str, Any] = {}
    for name in args.figures:
        t0 = time.perf_counter()
        if name == "fig4":
            payload = fig4(args)
            payload.update(seconds=time.perf_counter() - t0, jobs=args.jobs)
        else:
            sweep_args = argparse.Namespace(**{**vars(args), "work": args.work / name})  # one sweep per figure
            payload = _setting_figure(sweep_args, name)
            payload.update(_sweeps.measured_time(sweep_args, time.perf_counter() - t0))
            if not args.quiet:
                _print_optimum(payload)
        payload["machine"] = machine_info(args.device)
        write_json(args.out / f"{name}.json", payload)
        done[name] = payload
        if not args.quiet:
            print(f"{name}: {payload['seconds']:.0f} s; {args.out / (name + '.png')}")
    return done


def _setting_figure(args: argparse.Namespace, name: str) -> dict[str, Any]:
    """Fig. 6 (eta) or Fig. 7 (prompt length) over the paper's grid or ``--values``."""
    if name == "fig6":
        values = [float(v) for v in args.values.split(",")] if args.values else ETAS
        return setting_curve(args, 6, "prompt.eta", values, FIG6_BEST_ETA, "training missing rate eta")
    values = [int(v) for v in args.values.split(",")] if args.values else LENGTHS
    return setting_curve(args, 7, "prompt.prompter.prompt_length", values, FIG7_BEST_PROMPT_LENGTH, "prompt length",
                         log2=True)


if __name__ == "__main__":
    main()
