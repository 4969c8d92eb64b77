"""``python -m benchmarks.table1``: the paper's Table 1 — every method × the six missing cases.

For each backbone (MulT by default) and training seed, :func:`promptkit.experiment.pipeline.run_pipeline`
adapts the shipped pre-trained backbone of the ``<backbone>-synth`` recipe (the paper's transfer
setting: pre-trained on the generator's large source domain, adapted on the CMU-MOSI-sized target)
with every method of :data:`METHODS`, and scores all of them on the same fixed masks of the test
split: binary accuracy and F1 on non-zero labels per case, their average, and complete data; mean ±
std over seeds; the trainable parameters of each method. The paper's CMU-MOSI rows are printed
beside, labelled as the paper's figures on CMU-MOSI. Synthetic data, NOT CMU-MOSI.

The same runs are scored under the test missing rates 10..100 % (seeded masks, the same for every
method and seed); ``table1.json`` keeps acc, F1, MAE and Corr per rate, which
``python -m benchmarks.figures fig4`` draws. :func:`prompt_growth` prints how MPLMM's and MPMM's
prompts grow with the number of modalities (M = 3 and M = 5 of the any-M synthetic world).

Resumable: each (backbone, seed) run lives in ``--work``; a finished run is read back when it holds
every method asked for, and otherwise re-run with each finished training stage reused.

    python -m benchmarks.table1                       # CPU-sized default
    python -m benchmarks.table1 --seeds 0 --quick     # seconds: the code path only
    python -m benchmarks.table1 --full --device cuda  # the recipe's own sizes and epochs
    python -m benchmarks.table1 --datasets mosi iemocap sims   # the paper's columns

``--datasets``: ``mosi`` (the ``<backbone>-synth`` recipe, the default), ``iemocap`` and ``sims``
(``<backbone>-synth-<dataset>``: the same shipped source backbone moved into the IEMOCAP- and
CH-SIMS-like worlds through re-initialised input projections, scored by their own metric kinds:
four binary tasks' avg_acc / avg_f1, CH-SIMS's acc2 / F1). Their runs, summaries, CSV and PNG are
kept per dataset (``payload["datasets"]``, ``table1-<dataset>.csv``), the paper's column for that
data set printed beside.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from promptkit.evaluation.protocol import DEFAULT_RATES
from promptkit.metrics import metric_kind
from promptkit.recipes import Recipe, load, load_recipe_data
from promptkit.reference import TABLE1_CASES, TABLE1_IEMOCAP, TABLE1_MOSI, TABLE1_SIMS
from promptkit.experiment.pipeline import ZERO_FILLED, run_pipeline

from ._common import (
    RESULTS_DIR,
    machine_info,
    mean_std,
    read_finished_run,
    write_csv,
    write_json,
)

# promptkit method -> the paper's row (None: beyond the paper)
METHODS: dict[str, str | None] = {
    "lb": "LB", ZERO_FILLED: "MS", "ms_mean": None, "md_zero": "MD", "md_mean": None, "mctn": "MCTN",
    "mmin": "MMIN", "mpmm": "MPMM", "mpmm_attn": None, "lora": None, "lora_mplmm": None, "mplmm": "Ours",
}
RATE_METRICS = {"acc": "non0_acc2", "f1": "non0_f1", "mae": "mae", "corr": "corr"}  # Fig. 4's four panels
DATASETS: dict[str, tuple[str, dict]] = {"mosi": ("CMU-MOSI", TABLE1_MOSI), "iemocap": ("IEMOCAP", TABLE1_IEMOCAP),
                                         "sims": ("CH-SIMS", TABLE1_SIMS)}
"""dataset -> (the paper's name for it, its Table 1 column as printed)."""
CASES = TABLE1_CASES[:-1]  # the six incomplete cases of text/audio/vision
CPU = {"sizes": {"train": 1284, "valid": 300, "test": 1000}, "prompt_epochs": 3, "pretrain_epochs": 3}
QUICK = {"sizes": {"train": 48, "valid": 24, "test": 48}, "seq_lens": {"text": 6, "audio": 8, "vision": 7},
         "prompt_epochs": 1, "pretrain_epochs": 1, "rates": [0.5, 1.0]}


def recipe_for(backbone: str, seed: int, *, quick: bool = False, full: bool = False, dataset: str = "mosi") -> Recipe:
    """The shipped ``<backbone>-synth`` recipe (``<backbone>-synth-<dataset>`` for IEMOCAP and
    CH-SIMS) with training seed ``seed``: its own sizes and epochs (``full``), the CPU-sized
    default, or ``quick`` (a tiny set; MOSI's backbone pre-trained here for one epoch, the other
    data sets' still the shipped source backbone, which they transfer)."""
    recipe = load(f"{backbone}-synth" if dataset == "mosi" else f"{backbone}-synth-{dataset}")
    data, pre, prompt = recipe.data, recipe.pretrain, dataclasses.replace(recipe.prompt, seed=seed,
                                                                       methods=["mplmm"])
    if quick and dataset != "mosi":
        data = dataclasses.replace(data, sizes=QUICK["sizes"], synthetic={**data.synthetic, "seq_lens": QUICK["seq_lens"]})
        pre = dataclasses.replace(pre, epochs=QUICK["pretrain_epochs"])
        prompt = dataclasses.replace(prompt, epochs=QUICK["prompt_epochs"])
    elif quick:
        data = dataclasses.replace(data, sizes=QUICK["sizes"], synthetic={**data.synthetic, "seq_lens": QUICK["seq_lens"]},
                                   pretrain_on="target", source_sizes=None)
        pre = dataclasses.replace(pre, checkpoint=None, epochs=QUICK["pretrain_epochs"])
        prompt = dataclasses.replace(prompt, epochs=QUICK["prompt_epochs"])
    elif not full:
        data = dataclasses.replace(data, sizes=CPU["sizes"] if dataset == "mosi" else
                                   {**(data.sizes or {}), "valid": CPU["sizes"]["valid"], "test": CPU["sizes"]["test"]})
        pre = dataclasses.replace(pre, epochs=CPU["pretrain_epochs"])  # LB's per-case models train with it
        prompt = dataclasses.replace(prompt, epochs=CPU["prompt_epochs"])
    rates = QUICK["rates"] if quick else list(DEFAULT_RATES)
    evaluation = dataclasses.replace(recipe.eval, missing_rates=rates, **({"max_se": None} if quick else {}))
    return recipe.replace(data=data, pretrain=pre, prompt=prompt, eval=evaluation)


def run_seed(recipe: Recipe, work: Path, methods: Sequence[str], device: str) -> dict[str, Any]:
    """One seed's run of every method; its ``protocol.json`` is read back when it holds every
    method and rate asked for (else the run repeats, each finished training stage read back)."""
    run = read_finished_run(work / "protocol.json", recipe.backbone.factory)
    if run is not None:
        rates = {str(float(r)) for r in recipe.eval.missing_rates}
        if all(m in run["results"] and rates <= set(run["results"][m].get("rates", {})) for m in methods):
            return run
    trained = [m for m in methods if m != ZERO_FILLED]  # the zero-filled reference always runs
    return run_pipeline(recipe, load_recipe_data(recipe), work, device=device, resume=True, progress=False,
                        methods=trained)


def run_seeds(jobs: Sequence[tuple], processes: int) -> list[dict[str, Any]]:
    """:func:`run_seed` for each job, in ``processes`` processes of one torch thread each (seeds are
    independent runs), results in the jobs' order."""
    if processes <= 1 or len(jobs) <= 1:
        return [run_seed(*job) for job in jobs]
    import os
    from concurrent.futures import ProcessPoolExecutor

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with ProcessPoolExecutor(min(processes, len(jobs)), initializer=_one_thread) as pool:
        return list(pool.map(run_seed, *zip(*jobs)))


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def summarize(runs: Sequence[dict[str, Any]], methods: Sequence[str], kind: str = "mosi") -> dict[str, Any]:
    """Per method: per case (and avg, complete) acc and F1 mean ± std over runs, in percent (the
    metric kind's accuracy and F1 keys); trainable counts."""
    k = metric_kind(kind)
    acc, f1 = k.accuracy, k.f1
    rate_metrics = {"acc": acc, "f1": f1, **({"mae": "mae", "corr": "corr"} if k.task == "regression" else {})}
    out: dict[str, Any] = {}
    for m in methods:
        cells = {}
        for case in (*CASES, "avg", "complete"):
            accs = [100 * r["results"][m]["cases"][case][acc] for r in runs]
            f1s = [100 * r["results"][m]["cases"][case][f1] for r in runs]
            (am, asd), (fm, fsd) = mean_std(accs), mean_std(f1s)
            cells[case] = {"acc": {"mean": am, "std": asd, "per_seed": accs}, "f1": {"mean": fm, "std": fsd, "per_seed": f1s}}
        rates = {}
        for rate in runs[0]["results"][m].get("rates", {}):
            rates[rate] = {}
            for name, key in rate_metrics.items():
                vals = [(100 if name in ("acc", "f1") else 1) * r["results"][m]["rates"][rate][key] for r in runs]
                mean, std = mean_std(vals)
                rates[rate][name] = {"mean": mean, "std": std, "per_seed": vals}
        trainable = runs[0].get("trainable", {}).get(m, {}).get("trainable_params", 0)
        out[m] = {"cases": cells, "rates": rates, "trainable_params": int(trainable), "paper_row": METHODS.get(m)}
    return out


GROWTH_MODALITIES = ("text", "audio", "vision", "pose", "gaze")  # M = 5: two extra views of the any-M world


def prompt_growth(backbone: str = "mult", ms: Sequence[int] = (3, 5)) -> dict[str, Any]:
    """Prompt parameters of MPLMM (generative + signal + type prompts and MMGM) and of MPMM's
    per-case sets (input level and attention level) on the ``<backbone>-synth`` recipe's backbone
    over the first M of :data:`GROWTH_MODALITIES`, per M. MPLMM grows linearly in M, MPMM as
    ``2**M - 1`` prompt sets (the backbone itself grows with M too: MulT has M(M-1) crossmodal
    transformers)."""
    from promptkit import MissingModalityPrompter, PrompterConfig
    from promptkit.backbone_files import build_backbone
    from promptkit.data import make_synthetic_mosi
    from promptkit.methods.mpmm import PerCasePrompter
    from promptkit.methods.mpmm_attention import (
        attention_prompt_parameters,
        attention_widths,
    )

    recipe = load(f"{backbone}-synth")
    out: dict[str, Any] = {}
    for m in ms:
        mods = GROWTH_MODALITIES[:m]
        data = make_synthetic_mosi(sizes=(4, 2, 2), seq_lens={x: 4 for x in mods}, modalities=mods)
        model = build_backbone(recipe, data)
        counts: dict[str, int] = {}
        for name, cls, overrides in (("mplmm", MissingModalityPrompter, {}),
                                     ("mpmm", PerCasePrompter, {"generative": False, "signal": False})):
            config = PrompterConfig(**{**recipe.prompt.prompter, **overrides})
            prompter = cls(model, hooks=recipe.hook_spec(), config=config, feature_dims=data.feature_dims)
            counts[name] = int(sum(prompter.prompt_parameters().values()))
            prompter.unwrap()
        counts["mpmm_attn"] = int(attention_prompt_parameters(m, config.prompt_length, attention_widths(model)))
        out[str(m)] = {"modalities": list(mods), "cases": 2**m - 1, **counts}
    return out


def print_growth(growth: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    methods = ("mplmm", "mpmm", "mpmm_attn")
    table = Table(title="Prompt parameters by number of modalities M (MPLMM linear in M, MPMM 2^M - 1 sets)")
    for col in ("M", "cases", *methods, "mpmm per set"):
        table.add_column(col, justify="right")
    for m, g in growth.items():
        table.add_row(m, str(g["cases"]), *[f"{g[k]:,}" for k in methods], f"{g['mpmm'] // g['cases']:,}")
    Console().print(table)


def print_table(summary: dict[str, Any], data_label: str, seeds: Sequence[int], dataset: str = "mosi") -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Table 1 — acc / F1 (%), mean ± std over seeds {list(seeds)}; {data_label}")
    table.add_column("method")
    for case in (*CASES, "avg", "complete"):
        table.add_column(case, justify="right")
    table.add_column("trainable", justify="right")
    for m, s in summary.items():
        cells = [f"{s['cases'][c]['acc']['mean']:.1f}±{s['cases'][c]['acc']['std']:.1f} / "
                 f"{s['cases'][c]['f1']['mean']:.1f}" for c in (*CASES, "avg", "complete")]
        table.add_row(m, *cells, f"{s['trainable_params']:,}")
        paper, (name, rows) = s["paper_row"], DATASETS[dataset]
        if paper in rows:
            table.add_row(f"  paper {paper}, {name}", *[f"{a:.1f} / " + ("–" if f is None else f"{f:.1f}")
                                                        for a, f in rows[paper]], "–", "", style="dim")
    Console(width=max(Console().width, 160)).print(table)


def plot(path: Path, summary: dict[str, Any], data_label: str, ylabel: str = "binary accuracy, non-zero labels (%)") -> None:
    """Grouped bars: one group per case, one bar per method (accuracy, std as error bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = (*CASES, "avg")
    fig, ax = plt.subplots(figsize=(12, 4.5))
    width = 0.8 / max(len(summary), 1)
    for i, (m, s) in enumerate(summary.items()):
        xs = [k + (i - (len(summary) - 1) / 2) * width for k in range(len(cases))]
        ax.bar(xs, [s["cases"][c]["acc"]["mean"] for c in cases], width,
               yerr=[s["cases"][c]["acc"]["std"] for c in cases], label=m, capsize=2)
    ax.set_xticks(range(len(cases)), cases)
    ax.set_ylabel(ylabel)
    ax.set_xlabel("available modalities")
    ax.set_ylim(40, 90)
    ax.set_title(f"Table 1 on {data_label}", fontsize=9, wrap=True)
    ax.legend(ncol=6, fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.table1", description=__doc__.split("\n\n")[0])
    p.add_argument("--backbones", nargs="+", default=["mult"])
    p.add_argument("--datasets", nargs="+", default=["mosi"], choices=list(DATASETS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--quick", action="store_true", help="tiny sizes: the code path, no figures")
    p.add_argument("--full", action="store_true", help="the recipe's own sizes and epochs (for a GPU)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--jobs", type=int, default=2, help="seeds run in this many processes (one torch thread each)")
    p.add_argument("--work", type=Path, default=Path("runs/table1"))
    p.add_argument("--out", type=Path, default=RESULTS_DIR)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    methods = [m for m in METHODS if m in args.methods]
    t0 = time.perf_counter()
    payload: dict[str, Any] = {"seeds": args.seeds, "methods": methods, "setting": "quick" if args.quick else
                               "full" if args.full else "cpu", "backbones": {}}
    for dataset in args.datasets:
        for backbone in args.backbones:
            work = args.work / backbone if dataset == "mosi" else args.work / dataset / backbone
            jobs = [(recipe_for(backbone, seed, quick=args.quick, full=args.full, dataset=dataset), work / f"s{seed}",
                     methods, args.device) for seed in args.seeds]
            runs = run_seeds(jobs, args.jobs)
            summary = summarize(runs, methods, jobs[0][0].data.metric)
            if dataset == "mosi":
                payload["data"] = runs[0]["data"]
                payload["backbones"][backbone] = summary
            else:
                entry = payload.setdefault("datasets", {}).setdefault(dataset, {
                    "data": runs[0]["data"], "metric": runs[0]["metric"], "backbones": {},
                    "paper": {"source": f"MPLMM Table 1, {DATASETS[dataset][0]} (the paper's data, not ours)",
                              "rows": DATASETS[dataset][1]}})
                entry["backbones"][backbone] = summary
            if not args.quiet:
                print_table(summary, runs[0]["data"], args.seeds, dataset)
    if "mosi" not in args.datasets:
        del payload["backbones"]
    payload["seconds"] = time.perf_counter() - t0
    payload["jobs"] = args.jobs
    payload["prompt_growth"] = {b: prompt_growth(b) for b in args.backbones if b == "mult"}
    if not args.quiet:
        for growth in payload["prompt_growth"].values():
            print_growth(growth)
    payload["machine"] = machine_info(args.device)
    payload["paper"] = {"source": "MPLMM Table 1, CMU-MOSI (the paper's data, not ours)", "rows": TABLE1_MOSI}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "table1.json", payload)
    columns = ["backbone", "method", "case", "acc_mean", "acc_std", "f1_mean", "f1_std", "trainable_params"]
    tables = {"": (payload.get("backbones", {}), payload.get("data"), "binary accuracy, non-zero labels (%)")}
    tables.update({f"-{ds}": (e["backbones"], e["data"], f"{e['metric']} (%)") for ds, e in payload.get("datasets", {}).items()})
    for suffix, (per_backbone, label, ylabel) in tables.items():
        if not per_backbone:
            continue
        rows = [[b, m, c, s["cases"][c]["acc"]["mean"], s["cases"][c]["acc"]["std"], s["cases"][c]["f1"]["mean"],
                 s["cases"][c]["f1"]["std"], s["trainable_params"]]
                for b, summ in per_backbone.items() for m, s in summ.items() for c in (*CASES, "avg", "complete")]
        write_csv(args.out / f"table1{suffix}.csv", columns, rows)
        for backbone, summary in per_backbone.items():
            name = f"table1{suffix}-{backbone}.png" if len(args.backbones) > 1 else f"table1{suffix}.png"
            plot(args.out / name, summary, label, ylabel)
    if not args.quiet:
        print(f"{payload['seconds']:.0f} s; results in {args.out / 'table1.json'}")
    return payload


if __name__ == "__main__":
    main()
