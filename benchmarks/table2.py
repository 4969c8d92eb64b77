"""``python -m benchmarks.table2``: the paper's Table 2 - prompts on frozen backbones - with controls.

For each backbone, data seed and training seed this runs the shipped ``<backbone>-synth`` recipe
through :func:`promptkit.experiment.pipeline.run_pipeline` (the same code as ``promptkit run``): a backbone
pre-trained on the synthetic source domain (shipped, or pre-trained once per data seed here) is
adapted on the target by the MPLMM prompts and by the two controls (head only; full fine-tuning at
the same eta), and every model is evaluated on the same fixed masks of the large test split.

Columns: **Com** / **Incom** (zero-filled frozen backbone, complete / average of the six missing
cases) and **Com†** / **Incom†** (with prompts), binary accuracy on non-zero labels; paired
differences per run (mean ± SE over test samples) and over runs (mean ± SE over seeds); the
per-case ridge ceiling, headroom and share recovered. Synthetic data, NOT CMU-MOSI; the paper's
CMU-MOSI figures are shown beside ours, not compared with them.

Resumable: every run's results land in ``--work/<backbone>/d<data seed>/s<seed>/protocol.json``;
an interrupted benchmark started again skips finished runs and resumes the unfinished one.

    python -m benchmarks.table2 --backbones mult --seeds 0 1 2 3 4 --data-seeds 0 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from promptkit.evaluation import summarize_over_seeds
from promptkit.recipes import Recipe, load, load_recipe_data
from promptkit.reference import TABLE1_MOSI, TABLE2_MOSI_ACC2
from promptkit.train.device import resolve_device
from promptkit.methods.controls import FULL_FINETUNE, HEAD_ONLY
from promptkit.methods.mplmm import NAME as PROMPTS
from promptkit.experiment.pipeline import (
    ZERO_FILLED,
    comparison_key,
    obtain_backbone,
    run_pipeline,
)

from ._common import RESULTS_DIR, machine_info, read_finished_run, write_csv, write_json, write_png

BACKBONES: tuple[str, ...] = ("mult", "misa", "mmim", "unimse")
COLUMNS: tuple[str, ...] = ("com", "com_prompted", "incom", "incom_prompted")
# The paper's Table 2 has no MulT row; its Table 1 (MulT, CMU-MOSI) gives Incom / Incom† as the
# LB and "Ours" averages over the six cases.
PAPER: dict[str, tuple[float | None, ...]] = {
    **{k: tuple(v) for k, v in TABLE2_MOSI_ACC2.items()},
    "mult": (None, None, TABLE1_MOSI["LB"][-1][0], TABLE1_MOSI["Ours"][-1][0]),
}
# (JSON key, method a, method b, setting): the paired comparisons summarised over runs
PAIRED: tuple[tuple[str, str, str, str], ...] = (
    ("incom_prompted_vs_incom", PROMPTS, ZERO_FILLED, "avg"),
    ("incom_prompted_vs_head_only", PROMPTS, "head_only", "avg"),
    ("incom_prompted_vs_full_finetune", PROMPTS, "full_finetune", "avg"),
    ("incom_head_only_vs_incom", "head_only", ZERO_FILLED, "avg"),
    ("com_prompted_vs_com", PROMPTS, ZERO_FILLED, "complete"),
    ("com_prompted_vs_head_only", PROMPTS, "head_only", "complete"),
)
CHANCE_MARGIN = 55.0
"""Complete-data accuracy (%) below which a pre-trained backbone counts as failed (chance is ~50)."""
QUICK = {"sizes": {"train": 48, "valid": 24, "test": 48}, "source_sizes": {"train": 48, "valid": 24, "test": 24},
         "seq_lens": {"text": 6, "audio": 8, "vision": 7}}


def recipe_for(backbone: str, data_seed: int, seed: int, quick: bool = False, epochs: int | None = None,
               source_train: int | None = None) -> Recipe:
    """The shipped ``<backbone>-synth`` recipe on ``data_seed``, adapted with training seed ``seed``,
    both controls on, no missing-rate sweep (Table 2 reads the fixed cases only). ``source_train``
    pre-trains here on that many source-domain samples instead of using a shipped backbone."""
    recipe = load(f"{backbone}-synth")
    data = dataclasses.replace(recipe.data, seed=data_seed)
    pre = dataclasses.replace(recipe.pretrain, seed=data_seed)
    if source_train is not None:
        sizes = {**(data.source_sizes or {"valid": 1000, "test": 1000}), "train": int(source_train)}
        data = dataclasses.replace(data, pretrain_on="source", source_sizes=sizes)
        pre = dataclasses.replace(pre, checkpoint=None)
    if quick:
        synthetic = {**recipe.data.synthetic, "seq_lens": QUICK["seq_lens"]}
        data = dataclasses.replace(data, sizes=QUICK["sizes"], synthetic=synthetic,
                                   source_sizes=QUICK["source_sizes"] if data.pretrain_on == "source" else None)
        pre = dataclasses.replace(pre, checkpoint=None, epochs=1)
    prompt = dataclasses.replace(recipe.prompt, seed=seed, methods=[PROMPTS, HEAD_ONLY, FULL_FINETUNE],
                                 **({"epochs": epochs} if epochs else {}))
    if quick:
        prompt = dataclasses.replace(prompt, epochs=1)
    return recipe.replace(data=data, pretrain=pre, prompt=prompt, eval=dataclasses.replace(recipe.eval, missing_rates=[]))


def run_cell(recipe: Recipe, data: Any, work: Path, device: str) -> dict[str, Any]:
    """One run; its ``protocol.json`` is read back when it already exists (resume)."""
    run = read_finished_run(work / "protocol.json", recipe.backbone.factory)
    if run is not None:
        return run
    return run_pipeline(recipe, data, work, device=device, resume=True, progress=False)


def pretrained_for(recipe: Recipe, data: Any, work: Path, device: str) -> Recipe:
    """``recipe`` with ``[pretrain] checkpoint`` set: its shipped file, or one trained here once."""
    if recipe.pretrain.checkpoint is not None:
        return recipe
    path, _ = obtain_backbone(recipe, data, work, device=device, resume=True, progress=False)
    return recipe.replace(pretrain=dataclasses.replace(recipe.pretrain, checkpoint=str(path.resolve())))


def row(record: dict[str, Any]) -> dict[str, Any]:
    """One run's Table-2 columns (%) and its paired differences (points)."""
    acc = record["metric"]
    res = record["results"]
    out = {
        "com": 100 * res[ZERO_FILLED]["cases"]["complete"][acc],
        "com_prompted": 100 * res[PROMPTS]["cases"]["complete"][acc],
        "incom": 100 * res[ZERO_FILLED]["cases"]["avg"][acc],
        "incom_prompted": 100 * res[PROMPTS]["cases"]["avg"][acc],
        "incom_head_only": 100 * res["head_only"]["cases"]["avg"][acc],
        "incom_full_finetune": 100 * res["full_finetune"]["cases"]["avg"][acc],
        "cases": {m: {c: 100 * v[acc] for c, v in r["cases"].items()} for m, r in res.items()},
        "paired": {key: record["paired"][comparison_key(a, b)][setting] for key, a, b, setting in PAIRED},
        "paired_all": {k: {s: {"mean": d["mean"], "se": d["se"]} for s, d in v.items()}
                       for k, v in record["paired"].items()},
        "headroom": record["headroom"],
        "trainable_share": record["trainable"][PROMPTS]["trainable_share"],
        "prompt_share": record["trainable"][PROMPTS]["prompt_share"],
        "backbone_params": record["trainable"][PROMPTS]["backbone_params"],
        "seconds": sum(record["seconds"].values()),
    }
    return out


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Over runs: each column's mean ± SE, each paired comparison as ``{"mean", "se", "per_seed"}``,
    per-case accuracies and headroom shares, and whether the claims hold."""
    out: dict[str, Any] = {c: summarize_over_seeds([r[c] for r in rows])
                           for c in (*COLUMNS, "incom_head_only", "incom_full_finetune")}
    for key, *_ in PAIRED:
        out[key] = summarize_over_seeds([r["paired"][key]["mean"] for r in rows])
        out[key]["within_run_se"] = summarize_over_seeds([r["paired"][key]["se"] for r in rows])["mean"]
    cases = list(rows[0]["cases"][ZERO_FILLED])
    out["cases"] = {m: {c: summarize_over_seeds([r["cases"][m][c] for r in rows]) for c in cases}
                    for m in rows[0]["cases"]}
    out["headroom"] = {
        c: {k: summarize_over_seeds([r["headroom"][c][k] for r in rows]) for k in rows[0]["headroom"][c]}
        for c in rows[0]["headroom"]
    } if rows[0]["headroom"] else None
    # a backbone whose pre-training failed (complete-data accuracy near chance) supports no claim
    out["pretraining_failed"] = bool(out["com"]["mean"] < CHANCE_MARGIN)
    out["data_seeds"] = sorted({r["data_seed"] for r in rows})
    vs_head = out["incom_prompted_vs_head_only"]
    ok = not out["pretraining_failed"]
    out["prompts_beat_head_only"] = ok and bool(vs_head["mean"] > 2 * vs_head["se"])
    out["prompts_beat_zero_fill"] = ok and bool(out["incom_prompted_vs_incom"]["mean"] > 2 * out["incom_prompted_vs_incom"]["se"])
    out["complete_not_hurt"] = ok and bool(out["com_prompted_vs_com"]["mean"] > -2 * out["com_prompted_vs_com"]["se"])
    for k in ("backbone_params", "prompt_share", "trainable_share"):
        out[k] = rows[0][k]
    out["runs"] = len(rows)
    out["seconds_per_run"] = sum(r["seconds"] for r in rows) / len(rows)
    return out


def kept_rows(previous: Path, rows: dict[str, list[dict[str, Any]]], measured: dict[str, Any],
              data_label: str) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any], str]:
    """``rows`` (the backbones rerun now) merged into the per-run rows of the ``previous`` Table 2 file:
    the other backbones keep their rows and where they were measured; the data must be the same.
    Returns the rows, where each backbone's were measured, and the previous file's data label."""
    if not previous.is_file():
        raise SystemExit(f"--update: {previous} does not exist (run the whole table first)")
    old = json.loads(previous.read_text())
    world = lambda label: re.sub(r"seeds [\d,]+", "seeds", label)  # noqa: E731  (each row keeps its data seeds)
    if world(old["data"]) != world(data_label):
        raise SystemExit(f"--update needs the same data as {previous}: it has {old['data']!r}, this run {data_label!r}")
    old_measured = old.get("rows_measured") or {n: {"seconds": old["seconds"], "machine": old["machine"]}
                                                for n in old["per_seed"]}
    merged = {**old["per_seed"], **rows}  # the table's order, the rerun rows replacing theirs
    return merged, {n: measured.get(n, old_measured.get(n)) for n in merged}, old["data"]


def print_table(summary: dict[str, dict[str, Any]], data_label: str, runs: str) -> None:
    from rich.console import Console
    from rich.table import Table

    fmt = lambda s: f"{s['mean']:.1f} ± {s['se']:.1f}"
    dif = lambda s: f"{s['mean']:+.2f} ± {s['se']:.2f}"
    table = Table(
        title=f"Table 2 - binary accuracy (%), mean ± SE over {runs}",
        caption=f"ours: {data_label}. paper: CMU-MOSI as printed (MulT: Table 1 LB / Ours averages). "
        "† = prompts on the frozen backbone; Incom = average of the six missing cases; "
        "Δ = paired difference on identical masks, mean ± SE over runs.",
    )
    for col in ("backbone", "Com", "Com†", "Incom", "Incom†", "Δ vs zero-fill", "Δ vs head only", "Δ vs full FT",
                "Δ Com", "paper Incom → Incom†"):
        table.add_column(col, justify="left" if col == "backbone" else "right")
    for name, s in summary.items():
        paper = PAPER.get(name, (None,) * 4)
        table.add_row(
            name, fmt(s["com"]), fmt(s["com_prompted"]), fmt(s["incom"]), fmt(s["incom_prompted"]),
            dif(s["incom_prompted_vs_incom"]), dif(s["incom_prompted_vs_head_only"]),
            dif(s["incom_prompted_vs_full_finetune"]), dif(s["com_prompted_vs_com"]),
            f"{paper[2]:.1f} → {paper[3]:.1f}",
        )
    Console(width=max(Console().width, 170)).print(table)


def plot(path: Path, summary: dict[str, dict[str, Any]], data_label: str) -> None:
    """Per backbone: the six-case average of zero-fill, head only, full fine-tuning and prompts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np


    bars = (("incom", "zero-filled"), ("incom_head_only", "head only"), ("incom_full_finetune", "full fine-tuning"),
            ("incom_prompted", "MPLMM prompts"))
    names = list(summary)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(1.8 * len(names) + 3, 4))
    for i, (col, label) in enumerate(bars):
        ax.bar(x + (i - 1.5) * 0.2, [summary[n][col]["mean"] for n in names], 0.2,
               yerr=[2 * summary[n][col]["se"] for n in names], capsize=3, label=label)
    ax.set_xticks(x, names)
    ax.set_ylabel("six-case average, binary accuracy (%)")
    lo = min(summary[n][c]["mean"] for n in names for c, _ in bars)
    ax.set_ylim(max(0, lo - 8), 100)
    ax.set_title(f"Table 2 (±2 SE over runs)\nours on {data_label}", fontsize=8)
    ax.legend(ncol=2, fontsize=8)
    fig.tight_layout()
    write_png(path, fig)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.table2", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default=None, help="cpu, cuda (default: cuda when available)")
    p.add_argument("--backbones", default=",".join(BACKBONES), help="comma-separated registry names")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="training seeds")
    p.add_argument("--data-seeds", type=int, nargs="+", default=[0], help="data seeds (world and samples)")
    p.add_argument("--epochs", type=int, help="override the adaptation epochs")
    p.add_argument("--work", type=Path, default=Path("runs/table2"), help="per-run results (resume from here)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="where table2.{json,csv,png} go")
    p.add_argument("--quick", action="store_true", help="tiny synthetic data: a smoke run of the code path")
    p.add_argument("--source-train", type=int, help="pre-train on this many source samples here (no shipped backbone)")
    p.add_argument("--skip-missing", action="store_true",
                   help="train nothing: summarise only the runs already finished in --work (the table says how many)")
    p.add_argument("--update", action="store_true",
                   help="rerun only --backbones and keep the other backbones' rows of the existing --out/table2.json "
                        "(same data seeds required)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    device = str(resolve_device(args.device))
    names = [b.strip() for b in args.backbones.split(",") if b.strip()]
    cells = [(b, d, s) for b in names for d in args.data_seeds for s in args.seeds]
    per_backbone: dict[str, list[dict[str, Any]]] = {}
    data_label = ""
    t_all = time.perf_counter()
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), TimeRemainingColumn(), disable=args.quiet) as bar:
        task = bar.add_task("table2", total=len(cells))
        cache: dict[tuple[str, int], tuple[Recipe, Any]] = {}
        for name, data_seed, seed in cells:
            bar.update(task, description=f"{name} data seed {data_seed}, seed {seed}")
            cell_dir = args.work / name / f"d{data_seed}" / f"s{seed}"
            if args.skip_missing and not (cell_dir / "protocol.json").is_file():
                bar.advance(task)
                continue
            recipe = recipe_for(name, data_seed, seed, args.quick, args.epochs, args.source_train)
            if (name, data_seed) not in cache:
                data = load_recipe_data(recipe)
                pre = recipe if args.skip_missing else pretrained_for(recipe, data, args.work / name / f"d{data_seed}", device)
                cache[(name, data_seed)] = (pre, data)
            pretrained, data = cache[(name, data_seed)]
            recipe = recipe.replace(pretrain=pretrained.pretrain)
            data_label = data.description.replace(f"seed={data_seed}", "seeds " + ",".join(map(str, args.data_seeds)))
            record = run_cell(recipe, data, cell_dir, device)
            per_backbone.setdefault(name, []).append({"data_seed": data_seed, "seed": seed, **row(record)})
            bar.advance(task)
    seconds = time.perf_counter() - t_all
    machine = machine_info(device)
    measured = {name: {"seconds": seconds, "machine": machine} for name in per_backbone}
    if args.update:
        per_backbone, measured, data_label = kept_rows(args.out / "table2.json", per_backbone, measured, data_label)
    summary = {name: summarize(rows) for name, rows in per_backbone.items()}
    runs = f"training seeds {args.seeds} x data seeds {args.data_seeds} (runs per backbone in the JSON)"
    if not args.quiet:
        print_table(summary, data_label, runs)
        print(f"total time {seconds:.0f} s for {len(cells)} runs (finished runs are read back, not rerun)")
    payload = {
        "benchmark": "table2",
        "seeds": args.seeds,
        "data_seeds": args.data_seeds,
        "source_train": args.source_train,
        "data": data_label,
        "metric": "non0_acc2 (%)",
        "claim_rule": "a method beats another when the paired difference's mean over runs exceeds 2 SE",
        "seconds": seconds,
        "machine": machine,
        "rows_measured": measured,
        "summary": summary,
        "per_seed": per_backbone,
        "paper_cmu_mosi": {k: dict(zip(COLUMNS, v)) for k, v in PAPER.items()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "table2.json", payload)
    csv_rows = [[name, r["data_seed"], r["seed"], *(f"{r[c]:.2f}" for c in COLUMNS),
                 f"{r['incom_head_only']:.2f}", f"{r['incom_full_finetune']:.2f}", data_label]
                for name, rs in per_backbone.items() for r in rs]
    write_csv(args.out / "table2.csv", ["backbone", "data_seed", "seed", *COLUMNS, "incom_head_only",
                                        "incom_full_finetune", "data"], csv_rows)
    plot(args.out / "table2.png", summary, data_label)
    return payload


if __name__ == "__main__":
    main()
