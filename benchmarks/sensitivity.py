"""``python -m benchmarks.sensitivity``: where do the prompts pay? Prompts against the controls as the
non-verbal modalities' own signal weakens.

The embedded generator's audio and vision see the two sentiment factors with gains
(``verbal_gain``, ``nonverbal_gain``) of (0.45, 0.40) and (0.30, 0.25) (version 2), which puts
their single-modality ridge ceilings at the top of published unimodal results; a level ``s``
multiplies both gains of both modalities by ``s`` (``[data.synthetic] views``), in the source
domain and the target alike, so ``s = 1`` is the main job's world and ``s = 0`` leaves audio and
vision no sentiment of their own (only the factors they share with the text). At each level a MulT
is pre-trained on that world's source (level 1 reads the shipped backbone, which is exactly that
pre-training) and adapted on the target by the MPLMM prompts, the head-only control and modality
dropout (MD, zeros), every model scored on the same fixed masks of the main job's 4000-sample test
split. Reported per level: each case's ridge ceiling, and **prompts − head only** and **prompts −
MD**, paired on identical samples and masks within a run, mean ± SE over the training seeds.
Synthetic data, NOT CMU-MOSI.

Resumable: a level's runs are a :func:`promptkit.experiment.sweep.run_sweep` over the seeds in
``--work/level=<s>/``, its pre-trained backbone in ``--work/level=<s>/pretrain``.

    python -m benchmarks.sensitivity --levels 0 0.5 1 --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from promptkit.data.synthetic.views import VIEWS_V2
from promptkit.evaluation import summarize_over_seeds
from promptkit.experiment.pipeline import comparison_key, obtain_backbone
from promptkit.experiment.sweep import run_sweep, sweep_timing
from promptkit.methods.mplmm import NAME as PROMPTS
from promptkit.recipes import Recipe, load, load_recipe_data

from ._common import RESULTS_DIR, machine_info, write_csv, write_json, write_png

RECIPE = "mult-synth"
CONTROLS: tuple[str, ...] = ("head_only", "md_zero")
SCALED = ("audio", "vision")
CASES = ("{t}", "{a}", "{v}", "{a,t}", "{t,v}", "{a,v}", "avg", "complete")
QUICK = {"sizes": {"train": 48, "valid": 24, "test": 48}, "seq_lens": {"text": 6, "audio": 8, "vision": 7},
         "epochs": 1}


def views_at(level: float) -> dict[str, dict[str, float]]:
    """``[data.synthetic] views`` that scale audio's and vision's sentiment gains by ``level``."""
    if not level >= 0:
        raise ValueError(f"a level scales gains and must be >= 0, got {level!r}")
    return {m: {"verbal_gain": VIEWS_V2[m].verbal_gain * level, "nonverbal_gain": VIEWS_V2[m].nonverbal_gain * level}
            for m in SCALED}


def recipe_at(level: float, *, quick: bool = False) -> Recipe:
    """The main job's recipe in the world of ``level``: its source pre-trained here unless the level is
    1 (the shipped backbone); ``quick``: tiny sizes, one epoch, pre-trained on the target."""
    recipe = load(RECIPE)
    data = dataclasses.replace(recipe.data, synthetic={**recipe.data.synthetic, "views": views_at(level)})
    pre, prompt = recipe.pretrain, dataclasses.replace(recipe.prompt, methods=[PROMPTS, *CONTROLS])
    if quick:
        data = dataclasses.replace(data, sizes=QUICK["sizes"], pretrain_on="target", source_sizes=None,
                                   synthetic={**data.synthetic, "seq_lens": QUICK["seq_lens"]})
        pre = dataclasses.replace(pre, checkpoint=None, epochs=QUICK["epochs"])
        prompt = dataclasses.replace(prompt, epochs=QUICK["epochs"])
    elif level != 1:
        pre = dataclasses.replace(pre, checkpoint=None)
    return recipe.replace(data=data, pretrain=pre, prompt=prompt,
                          eval=dataclasses.replace(recipe.eval, missing_rates=[]))


def run_level(level: float, seeds: Sequence[int], work: Path, *, quick: bool, jobs: int, device: str,
              progress: bool) -> tuple[list[dict[str, Any]], float]:
    """Every seed's ``protocol.json`` at ``level`` (finished runs read back) and the seconds the runs took."""
    recipe = recipe_at(level, quick=quick)
    out = work / f"level={level:g}"
    if recipe.pretrain.checkpoint is None:  # one pre-training per world, shared by its seeds
        path, _ = obtain_backbone(recipe, load_recipe_data(recipe), out, device=device, resume=True, progress=False)
        recipe = recipe.replace(pretrain=dataclasses.replace(recipe.pretrain, checkpoint=str(path.resolve())))
    run_sweep(recipe, {}, list(seeds), out, jobs=jobs, device=device, progress=progress)
    cells = json.loads((out / "sweep.json").read_text())["cells"]
    runs = [json.loads((out / "cells" / c["dir"] / "protocol.json").read_text()) for c in cells]
    return runs, sum(t["seconds"] for t in sweep_timing(out))


def summarize_level(level: float, runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One level: ceilings and each method's accuracy per case (%), and the paired differences of the
    prompts against each control per case, mean ± SE over runs of the per-run paired means."""
    acc = runs[0]["metric"]
    methods = list(runs[0]["results"])
    out: dict[str, Any] = {"level": level, "views": views_at(level), "runs": len(runs), "metric": acc}
    ceiling = runs[0].get("ceiling") or {}
    out["ceiling"] = {c: 100 * v["metrics"][acc] for c, v in ceiling.items() if acc in v.get("metrics", {})}
    six = [c for c in CASES[:6] if c in out["ceiling"]]
    if len(six) == 6:
        out["ceiling"]["avg"] = sum(out["ceiling"][c] for c in six) / 6
    out["accuracy"] = {m: {c: summarize_over_seeds([100 * r["results"][m]["cases"][c][acc] for r in runs])
                           for c in CASES} for m in methods}
    out["paired"] = {}
    for control in CONTROLS:
        key = comparison_key(PROMPTS, control)
        out["paired"][key] = {}
        for c in CASES:
            per_run = [r["paired"][key][c] for r in runs]
            s = summarize_over_seeds([p["mean"] for p in per_run])
            s["within_run_se"] = summarize_over_seeds([p["se"] for p in per_run])["mean"]
            out["paired"][key][c] = s
    return out


def print_table(levels: Sequence[dict[str, Any]], data: str) -> None:
    from rich.console import Console
    from rich.table import Table

    dif = lambda s: f"{s['mean']:+.2f} ± {s['se']:.2f}"  # noqa: E731
    table = Table(title="Where the prompts pay: six-case average, binary accuracy (%), mean ± SE over seeds",
                  caption=f"{data}. Δ: paired on identical samples and masks within a run.")
    for col in ("level", "ceiling {a}", "ceiling {v}", "ceiling avg", "zero-filled", "head only", "MD", "prompts",
                "prompts − head only", "prompts − MD"):
        table.add_column(col, justify="right")
    for s in levels:
        acc, ceil, pair = s["accuracy"], s["ceiling"], s["paired"]
        table.add_row(f"{s['level']:g}", *(f"{ceil[c]:.1f}" if c in ceil else "-" for c in ("{a}", "{v}", "avg")),
                      *(f"{acc[m]['avg']['mean']:.1f}" for m in ("zero_filled", "head_only", "md_zero", PROMPTS)),
                      dif(pair[comparison_key(PROMPTS, "head_only")]["avg"]),
                      dif(pair[comparison_key(PROMPTS, "md_zero")]["avg"]))
    Console(width=max(Console().width, 150)).print(table)


def plot(path: Path, levels: Sequence[dict[str, Any]], data: str) -> None:
    """Prompts − each control (six-case average, ±2 SE) against the level, with the audio/vision ceilings."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [s["level"] for s in levels]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4))
    for control, label in (("head_only", "prompts − head only"), ("md_zero", "prompts − MD")):
        d = [s["paired"][comparison_key(PROMPTS, control)]["avg"] for s in levels]
        ax.errorbar(x, [v["mean"] for v in d], yerr=[2 * v["se"] for v in d], marker="o", capsize=3, label=label)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("audio/vision sentiment gain (1 = the main job's world)")
    ax.set_ylabel("paired difference, six-case average (points)")
    ax.legend(fontsize=8)
    for case, label in (("{a}", "audio alone"), ("{v}", "vision alone"), ("{a,v}", "audio + vision")):
        if all(case in s["ceiling"] for s in levels):
            bx.plot(x, [s["ceiling"][case] for s in levels], marker="s", ls="--", label=f"ceiling, {label}")
    for m, label in (("zero_filled", "zero-filled"), ("head_only", "head only"), ("md_zero", "MD"), (PROMPTS, "prompts")):
        bx.plot(x, [s["accuracy"][m]["avg"]["mean"] for s in levels], marker="o", label=f"{label}, six-case avg")
    bx.set_xlabel("audio/vision sentiment gain")
    bx.set_ylabel("binary accuracy (%)")
    bx.legend(fontsize=7)
    fig.suptitle("\n".join(textwrap.wrap(f"Where the prompts pay (±2 SE over seeds) - {data}", 150)), fontsize=8)
    fig.tight_layout()
    write_png(path, fig)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.sensitivity", description=__doc__.split("\n\n")[0])
    p.add_argument("--levels", type=float, nargs="+", default=[0.0, 0.5, 1.0],
                   help="audio/vision sentiment gain multipliers (1: the main job's world)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--jobs", type=int, default=2, help="runs at once, one torch thread each")
    p.add_argument("--device", default="cpu")
    p.add_argument("--work", type=Path, default=Path("runs/sensitivity"))
    p.add_argument("--out", type=Path, default=RESULTS_DIR)
    p.add_argument("--quick", action="store_true", help="tiny sizes: the code path, no figures")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    for level in args.levels:
        views_at(level)  # every level checked before anything trains
    t0 = time.perf_counter()
    levels, seconds, data = [], 0.0, ""
    for level in args.levels:
        runs, s = run_level(level, args.seeds, args.work, quick=args.quick, jobs=args.jobs, device=args.device,
                            progress=not args.quiet)
        levels.append(summarize_level(level, runs))
        seconds += s
        data = f"{runs[0]['data']}; audio's and vision's sentiment gains x level"
    if not args.quiet:
        print_table(levels, data)
    payload = {"benchmark": "sensitivity", "setting": "quick" if args.quick else "cpu", "recipe": RECIPE,
               "seeds": args.seeds, "data": data, "seconds": seconds, "wall_seconds": time.perf_counter() - t0,
               "jobs": args.jobs, "machine": machine_info(args.device), "levels": levels}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "sensitivity.json", payload)
    rows = [[s["level"], control, c, f"{d['mean']:.3f}", f"{d['se']:.3f}", s["runs"]]
            for s in levels for control in CONTROLS
            for c, d in s["paired"][comparison_key(PROMPTS, control)].items()]
    write_csv(args.out / "sensitivity.csv", ["level", "control", "case", "prompts_minus_control", "se", "runs"], rows)
    plot(args.out / "sensitivity.png", levels, data)
    return payload


if __name__ == "__main__":
    main()
