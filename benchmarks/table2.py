"""``python -m benchmarks.table2``: the paper's Table 2 - prompts on frozen backbones - measured.

For each backbone and seed: pretrain on complete training data → **Com** (test, complete) and
**Incom** (test, average over the six fixed missing cases, missing inputs zero-filled, frozen
backbone) → wrap, prompt-tune at eta = 0.7 → **Com†** and **Incom†**. Binary accuracy on non-zero
labels (``non0_acc2``), mean ± std over seeds, beside the paper's CMU-MOSI figures.

Default: the embedded synthetic data (NOT CMU-MOSI) with each backbone's ``<name>-synth`` recipe,
CPU-sized. ``--data FILE`` runs the ``<name>-mosi`` recipes (published settings) on a user's file.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from promptkit.recipes import Recipe, load, load_recipe_data
from promptkit.reference import TABLE1_MOSI, TABLE2_MOSI_ACC2
from promptkit.report import ACC_F1_KEYS
from promptkit.train.engine import resolve_device
from promptkit.train.pretrain import BACKBONE_FILE, load_backbone, pretrain
from promptkit.train.prompt_stage import prompt_tune
from promptkit.train.protocol import evaluate_protocol, prompted_forward, zero_filled_forward

from ._common import RESULTS_DIR, machine_info, mean_std, write_csv, write_json

BACKBONES: tuple[str, ...] = ("mult", "misa", "mmim", "unimse")
COLUMNS: tuple[str, ...] = ("com", "com_prompted", "incom", "incom_prompted")
# The paper's Table 2 has no MulT row; its Table 1 (MulT, CMU-MOSI) gives Incom / Incom† as the
# LB and "Ours" averages over the six cases.
PAPER: dict[str, tuple[float | None, ...]] = {
    **{k: tuple(v) for k, v in TABLE2_MOSI_ACC2.items()},
    "mult": (None, None, TABLE1_MOSI["LB"][-1][0], TABLE1_MOSI["Ours"][-1][0]),
}


QUICK = {"sizes": {"train": 48, "valid": 24, "test": 24}, "seq_lens": {"text": 6, "audio": 8, "vision": 7}}


def recipe_for(
    backbone: str, seed: int, data_path: str | None, epochs: int | None, prompt_epochs: int | None, quick: bool = False
) -> Recipe:
    """The backbone's shipped recipe with the seed (and epochs, if given) replaced.

    ``quick`` shrinks the synthetic data to a few dozen short samples: the test suite's smoke run.
    """
    recipe = load(f"{backbone}-{'mosi' if data_path else 'synth'}")
    if quick and not data_path:
        synthetic = {**recipe.data.synthetic, "seq_lens": QUICK["seq_lens"]}
        recipe = recipe.replace(data=dataclasses.replace(recipe.data, sizes=QUICK["sizes"], synthetic=synthetic))
    pre = dataclasses.replace(recipe.pretrain, seed=seed, **({"epochs": epochs} if epochs else {}))
    prompt_epochs = prompt_epochs or epochs
    prm = dataclasses.replace(recipe.prompt, seed=seed, **({"epochs": prompt_epochs} if prompt_epochs else {}))
    return recipe.replace(pretrain=pre, prompt=prm)


def run_one(recipe: Recipe, data: Any, out_dir: Path, device: str) -> dict[str, Any]:
    """Pretrain, evaluate zero-filled, prompt-tune, evaluate prompted: one row of one seed."""
    kind = recipe.data.metric
    acc = ACC_F1_KEYS[kind][0]
    test = data.splits["test"]
    opts = dict(device=device, overwrite=True, progress=False)
    t0 = time.perf_counter()
    pretrain(recipe, data, out_dir / "pretrain", **opts)
    t_pre = time.perf_counter() - t0
    path = out_dir / "pretrain" / BACKBONE_FILE
    bare = load_backbone(path, device=device)
    base = evaluate_protocol(zero_filled_forward(bare, data.modalities), test, kind, rates=(), device=device)
    t0 = time.perf_counter()
    prompter, _ = prompt_tune(recipe, data, load_backbone(path, device=device), out_dir / "prompt", **opts)
    t_prompt = time.perf_counter() - t0
    prompter.eval()
    tuned = evaluate_protocol(prompted_forward(prompter), test, kind, rates=(), device=device)
    share = prompter.trainable_summary()
    return {
        "com": 100 * base.cases["complete"][acc],
        "com_prompted": 100 * tuned.cases["complete"][acc],
        "incom": 100 * base.cases["avg"][acc],
        "incom_prompted": 100 * tuned.cases["avg"][acc],
        "cases": {"zero_filled": base.cases, "prompted": tuned.cases},
        "backbone_params": share["backbone_params"],
        "prompt_share": share["prompt_share"],
        "trainable_share": share["trainable_share"],
        "pretrain_s": t_pre,
        "prompt_s": t_prompt,
    }


def summarize(per_seed: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± std of every column over seeds, the deltas, and whether the issue's claims hold."""
    out: dict[str, Any] = {}
    for col in COLUMNS:
        out[col] = mean_std([r[col] for r in per_seed])
    for base, tuned in (("com", "com_prompted"), ("incom", "incom_prompted")):
        out[f"delta_{base}"] = mean_std([r[tuned] - r[base] for r in per_seed])
    spread = max(out[c][1] for c in COLUMNS)
    out["spread"] = spread
    out["incom_lifted"] = out["delta_incom"][0] > spread
    out["com_kept"] = out["delta_com"][0] >= -spread
    for k in ("backbone_params", "prompt_share", "trainable_share"):
        out[k] = per_seed[0][k]
    out["seconds_per_seed"] = mean_std([r["pretrain_s"] + r["prompt_s"] for r in per_seed])[0]
    return out


def print_table(summary: dict[str, dict[str, Any]], data_label: str, seeds: Sequence[int]) -> None:
    from rich.console import Console
    from rich.table import Table

    fmt = lambda ms: f"{ms[0]:.1f} ± {ms[1]:.1f}"  # noqa: E731
    table = Table(
        title=f"Table 2 - binary accuracy (%), mean ± std over seeds {list(seeds)}",
        caption=f"ours: {data_label}. paper: CMU-MOSI as printed (MulT: Table 1 LB / Ours averages). "
        "† = prompts on the frozen backbone; Incom = average of the six missing cases.",
    )
    for col in ("backbone", "params", "prompts %", "trainable %", "Com", "Com†", "Δ", "Incom", "Incom†", "Δ",
                "holds", "paper Com", "paper Com†", "paper Incom", "paper Incom†"):
        table.add_column(col, justify="left" if col == "backbone" else "right")
    for name, s in summary.items():
        paper = [f"{v:.1f}" if v is not None else "-" for v in PAPER.get(name, (None,) * 4)]
        holds = ("Incom†>Incom" if s["incom_lifted"] else "Incom† NOT lifted") + (
            ", Com kept" if s["com_kept"] else ", Com† BELOW Com"
        )
        table.add_row(
            name, f"{s['backbone_params'] / 1e6:.2f} M", f"{100 * s['prompt_share']:.2f}",
            f"{100 * s['trainable_share']:.2f}", fmt(s["com"]), fmt(s["com_prompted"]), f"{s['delta_com'][0]:+.1f}",
            fmt(s["incom"]), fmt(s["incom_prompted"]), f"{s['delta_incom'][0]:+.1f}", holds, *paper,
        )
    Console(width=max(Console().width, 170)).print(table)


def plot(path: Path, summary: dict[str, dict[str, Any]], data_label: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from promptkit._atomic import atomic_write_bytes

    names = list(summary)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(1.8 * len(names) + 3, 4))
    for i, (col, label) in enumerate(zip(COLUMNS, ("Com", "Com†", "Incom", "Incom†"))):
        means = [summary[n][col][0] for n in names]
        stds = [summary[n][col][1] for n in names]
        ax.bar(x + (i - 1.5) * 0.2, means, 0.2, yerr=stds, capsize=3, label=label)
    ax.set_xticks(x, names)
    ax.set_ylabel("binary accuracy (%)")
    lo = min(summary[n][c][0] for n in names for c in COLUMNS)
    ax.set_ylim(max(0, lo - 10), 100)
    ax.set_title(f"ours on {data_label}", fontsize=8)
    ax.legend(ncol=4, fontsize=8)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.table2", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="a MulT/MMSA pickle or h5 file; runs the <backbone>-mosi recipes")
    p.add_argument("--device", default=None, help="cpu, cuda (default: cuda when available)")
    p.add_argument("--backbones", default=",".join(BACKBONES), help="comma-separated registry names")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, help="override both stages' epochs")
    p.add_argument("--prompt-epochs", type=int, help="override the prompt stage's epochs")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="where table2.{json,csv,png} go")
    p.add_argument("--quick", action="store_true", help="tiny synthetic data: a smoke run of the code path")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    device = str(resolve_device(args.device))
    names = [b.strip() for b in args.backbones.split(",") if b.strip()]
    per_backbone: dict[str, list[dict[str, Any]]] = {}
    data_label = ""
    jobs = [(b, s) for b in names for s in args.seeds]
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="promptkit-table2-") as tmp, Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(), TimeRemainingColumn(), disable=args.quiet,
    ) as bar:
        task = bar.add_task("table2", total=len(jobs))
        data_cache: dict[str, Any] = {}
        for name, seed in jobs:
            bar.update(task, description=f"{name} seed {seed}")
            recipe = recipe_for(name, seed, args.data, args.epochs, args.prompt_epochs, args.quick)
            key = repr(recipe.data)
            if key not in data_cache:
                data_cache[key] = load_recipe_data(recipe, args.data)
            data = data_cache[key]
            data_label = data.description
            per_backbone.setdefault(name, []).append(
                {"seed": seed, **run_one(recipe, data, Path(tmp) / f"{name}-{seed}", device)}
            )
            bar.advance(task)
    seconds = time.perf_counter() - t_all
    summary = {name: summarize(rows) for name, rows in per_backbone.items()}
    if not args.quiet:
        print_table(summary, data_label, args.seeds)
        print(f"total time {seconds:.0f} s for {len(jobs)} runs")
    payload = {
        "benchmark": "table2",
        "data": data_label,
        "metric": "non0_acc2 (%)",
        "seeds": args.seeds,
        "seconds": seconds,
        "machine": machine_info(device),
        "summary": summary,
        "per_seed": per_backbone,
        "paper_cmu_mosi": {k: dict(zip(COLUMNS, v)) for k, v in PAPER.items()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "table2.json", payload)
    rows = [
        [name, r["seed"], *(f"{r[c]:.2f}" for c in COLUMNS), data_label]
        for name, rs in per_backbone.items()
        for r in rs
    ]
    write_csv(args.out / "table2.csv", ["backbone", "seed", *COLUMNS, "data"], rows)
    plot(args.out / "table2.png", summary, data_label)
    return payload


if __name__ == "__main__":
    main()
