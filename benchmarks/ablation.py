"""``python -m benchmarks.ablation``: which prompt-stage choices make the prompts learn - on VALIDATION.

Each variant is the recipe's prompt stage reset to the paper's settings (:data:`BASE_PROMPTER`) with
a few settings changed (``--variants``; the default set is :data:`VARIANTS`). Every variant, and the head-only control, is trained on the
recipe's shipped pre-trained backbone for each training seed, and scored on the **validation**
split under the fixed cases, so choosing the defaults from this table never reads the test split.
Reported per variant: the six-case average, the paired difference to the head-only control of
the same seed (mean ± SE over validation samples, then mean ± SE over seeds), and how far the
prompts moved from their initial values (RMS of the change relative to the initial RMS).

Resumable: each (variant, seed) lands in ``--work/<variant>/s<seed>/valid.json``, with the code that
trained it (:func:`promptkit.train.run_dir.code_identity`); a record of other code is refused, not
read back (remove its folder, or use another ``--work``, to train it again).

    python -m benchmarks.ablation --recipe recipes/mult-synth.toml --seeds 0 1 --jobs 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from ._common import RESULTS_DIR, machine_info, write_json

VARIANTS: dict[str, dict[str, Any]] = {
    "head_only": {"method": "head_only"},
    "base": {},
    "prompt_lr_1e-2": {"prompt_lr": 1e-2},
    "prompt_lr_3e-2": {"prompt_lr": 3e-2},
    "data_init": {"prompter": {"init_scale": "data", "init_std": 0.1}},
    "type_prefix": {"prompter": {"type_positions": "prefix"}},
    "reconstruction": {"prompter": {"reconstruction_weight": 1.0}},
    "lr_data_prefix": {"prompt_lr": 1e-2, "prompter": {"init_scale": "data", "init_std": 0.1, "type_positions": "prefix"}},
    "lr_3e-3": {"lr": 3e-3},
    "epochs_20": {"epochs": 20},
    "head_only_epochs_20": {"method": "head_only", "epochs": 20},
}


BASE_PROMPTER: dict[str, Any] = {"init_scale": "fixed", "init_std": 0.02, "type_positions": "shift"}
"""What every variant starts from: the paper's prompt stage (one learning rate for everything, small
fixed init, type tokens as ordinary steps), whatever defaults the recipe has chosen since."""


def variant_recipe(recipe, overrides: dict[str, Any], seed: int):
    """The recipe's ``[prompt]`` reset to :data:`BASE_PROMPTER` (and ``prompt_lr`` None), then
    ``overrides`` (``prompter`` merged key by key) and ``seed``."""
    over = dict(overrides)
    over.pop("method", None)
    prompter = {**recipe.prompt.prompter, **BASE_PROMPTER, **over.pop("prompter", {})}
    over.setdefault("prompt_lr", None)
    prompt = dataclasses.replace(recipe.prompt, seed=seed, methods=["mplmm"], prompter=prompter, **over)
    return recipe.replace(prompt=prompt)


def run_variant(recipe_path: str, name: str, overrides: dict[str, Any], seed: int, work: str) -> dict[str, Any]:
    """Train one variant for one seed; score it on the validation split (read back if done)."""
    import torch

    torch.set_num_threads(1)
    from promptkit.backbone_files import load_backbone
    from promptkit.evaluation import evaluate_protocol, prompted_forward
    from promptkit.recipes import load, load_recipe_data, resolve_recipe_file
    from promptkit.train.prompt_stage import build_prompter, prompt_tune
    from promptkit.train.run_dir import code_change, code_identity

    out = Path(work) / name / f"s{seed}"
    done = out / "valid.json"
    base = load(recipe_path)
    code = code_identity(base.backbone.factory)
    if done.is_file():
        record = json.loads(done.read_text())
        changed = code_change(record.get("code"), code, done.name)
        if changed:
            raise RuntimeError(
                f"{done} was trained by other code ({changed}); remove {out} or use another --work to train this "
                "variant again"
            )
        return record
    recipe = variant_recipe(base, overrides, seed)
    data = load_recipe_data(recipe)
    path = resolve_recipe_file(recipe, recipe.pretrain.checkpoint.format(seed=recipe.data.seed))
    method = overrides.get("method", "mplmm")
    init = {k: v.detach().clone() for k, v in build_prompter(recipe, data, load_backbone(path, recipe=recipe), method=method)
            .named_parameters() if v.requires_grad}
    t0 = time.perf_counter()
    model, fit = prompt_tune(recipe, data, load_backbone(path, recipe=recipe), out / "stage", method=method, progress=False,
                             resume=True)
    seconds = time.perf_counter() - t0
    model.eval()
    valid = evaluate_protocol(prompted_forward(model), data.splits["valid"], recipe.data.metric, rates=(),
                              seed=recipe.eval.seed)
    moved = {}
    for n, p in model.named_parameters():
        if n in init and ("prompt" in n or "modality_maps" in n) and "backbone." not in n:
            moved[n] = float((p.detach() - init[n]).pow(2).mean().sqrt() / init[n].pow(2).mean().sqrt().clamp(min=1e-12))
    record = {"variant": name, "seed": seed, "overrides": overrides, "code": code, "best_epoch": fit.best_epoch,
              "seconds": seconds, "valid": valid.to_dict(),
              "predictions": {k: v.tolist() for k, v in valid.predictions.items()},
              "labels": valid.labels.tolist(), "moved": moved}
    out.mkdir(parents=True, exist_ok=True)
    done.write_text(json.dumps(record))
    return record


def _result(record: dict[str, Any]):
    import torch

    from promptkit.evaluation import ProtocolResult

    r = ProtocolResult.from_dict(record["valid"])
    r.predictions = {k: torch.tensor(v) for k, v in record["predictions"].items()}
    r.labels = torch.tensor(record["labels"])
    return r


def summarize(records: dict[str, list[dict[str, Any]]], acc: str = "non0_acc2") -> dict[str, Any]:
    """Per variant: six-case average and paired difference to head only, over seeds."""
    from promptkit.evaluation import paired_difference, summarize_over_seeds

    control = {r["seed"]: _result(r) for r in records.get("head_only", [])}
    out = {}
    for name, rs in records.items():
        avg = summarize_over_seeds([100 * r["valid"]["cases"]["avg"][acc] for r in rs])
        entry = {"avg": avg, "cases": {c: summarize_over_seeds([100 * r["valid"]["cases"][c][acc] for r in rs])
                                       for c in rs[0]["valid"]["cases"]}}
        if name != "head_only" and control:
            diffs = [paired_difference(_result(r), control[r["seed"]], "avg", acc, n_boot=200) for r in rs
                     if r["seed"] in control]
            entry["vs_head_only"] = summarize_over_seeds([d.mean for d in diffs])
            entry["vs_head_only"]["within_run_se"] = sum(d.se for d in diffs) / len(diffs)
        moved = [v for r in rs for v in r["moved"].values()]
        entry["prompt_change_rel_rms"] = sum(moved) / len(moved) if moved else None
        entry["seconds"] = sum(r["seconds"] for r in rs) / len(rs)
        out[name] = entry
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ablation", description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", default="recipes/mult-synth.toml")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names of VARIANTS")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--jobs", type=int, default=1, help="parallel processes (one torch thread each)")
    p.add_argument("--work", type=Path, default=Path("runs/ablation"))
    p.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = p.parse_args(argv)
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; known: {list(VARIANTS)}")
    jobs = [(args.recipe, n, VARIANTS[n], s, str(args.work)) for n in names for s in args.seeds]
    t0 = time.perf_counter()
    records: dict[str, list[dict[str, Any]]] = {}
    if args.jobs > 1:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        with ProcessPoolExecutor(args.jobs) as pool:
            for rec in pool.map(run_variant, *zip(*jobs)):
                records.setdefault(rec["variant"], []).append(rec)
                print(f"done {rec['variant']} seed {rec['seed']} ({rec['seconds']:.0f} s)", flush=True)
    else:
        for job in jobs:
            rec = run_variant(*job)
            records.setdefault(rec["variant"], []).append(rec)
            print(f"done {rec['variant']} seed {rec['seed']} ({rec['seconds']:.0f} s)", flush=True)
    summary = summarize(records)
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Prompt-stage ablation on the VALIDATION split (non0_acc2 %, seeds {args.seeds}; ± is the "
                        + ("paired SE over validation samples)" if len(args.seeds) == 1 else "SE over seeds)"))
    for col in ("variant", "six-case avg", "vs head only (paired)", "prompt change / init RMS", "s per run"):
        table.add_column(col, justify="left" if col == "variant" else "right")
    for name, e in summary.items():
        vs = e.get("vs_head_only")
        se = vs["within_run_se"] if vs and len(args.seeds) == 1 else (vs or {}).get("se")
        table.add_row(name, f"{e['avg']['mean']:.2f}" + (f" ± {e['avg']['se']:.2f}" if len(args.seeds) > 1 else ""),
                      f"{vs['mean']:+.2f} ± {se:.2f}" if vs else "-",
                      f"{e['prompt_change_rel_rms']:.2f}" if e["prompt_change_rel_rms"] is not None else "-",
                      f"{e['seconds']:.0f}")
    Console(width=140).print(table)
    payload = {"benchmark": "ablation", "split": "valid", "recipe": args.recipe, "seeds": args.seeds,
               "variants": {n: VARIANTS[n] for n in names}, "summary": summary,
               "seconds": time.perf_counter() - t0, "machine": machine_info("cpu")}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "ablation.json", payload)
    return payload


if __name__ == "__main__":
    main(sys.argv[1:])
