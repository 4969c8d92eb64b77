"""``python -m benchmarks.contribution``: what each prompt type of a TRAINED prompter contributes.

Takes finished runs of ``promptkit run`` / ``benchmarks.table2`` (a run directory with
``prompt/adapter`` and the recipe it ran), and scores the trained prompter on the **validation**
split four ways: as trained, with MMGM removed (missing inputs zero-filled instead of generated),
with the missing-signal prompts not added, and with the missing-type tokens set to zero. Each
removal is a paired difference to the intact prompter on identical masks (mean ± SE over
validation samples). A part whose removal costs nothing contributes nothing beyond the rest.

    python -m benchmarks.contribution --recipe mult-synth --runs runs/table2/mult/d0/s0 runs/table2/mult/d1/s0
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from ._common import RESULTS_DIR, machine_info, write_json

PARTS: tuple[str, ...] = ("intact", "no_mmgm", "no_signal", "no_type")


@contextlib.contextmanager
def removed(prompter: Any, part: str) -> Iterator[None]:
    """Within the block, ``prompter`` runs without ``part`` (``"intact"``: unchanged)."""
    saved: dict[str, Any] = {}
    if part == "no_mmgm":
        saved["mmgm"], prompter.mmgm = prompter.mmgm, None
    elif part == "no_signal" and prompter.signal_prompts is not None:
        saved["add_to"] = prompter.signal_prompts.add_to
        prompter.signal_prompts.add_to = lambda modality, seq, generated, layout: seq
    elif part == "no_type" and prompter.type_prompts is not None:
        saved["forward"] = prompter.type_prompts.forward
        original = saved["forward"]
        prompter.type_prompts.forward = lambda pairs, missing: [torch.zeros_like(t) for t in original(pairs, missing)]
    try:
        yield
    finally:
        if "mmgm" in saved:
            prompter.mmgm = saved["mmgm"]
        if "add_to" in saved:
            del prompter.signal_prompts.add_to
        if "forward" in saved:
            del prompter.type_prompts.forward


def score_run(recipe_name: str, run_dir: Path) -> dict[str, Any]:
    """The four variants of one run's trained prompter on its validation split."""
    from promptkit import MissingModalityPrompter
    from promptkit.backbone_files import load_backbone
    from promptkit.evaluation import (
        evaluate_protocol,
        paired_difference,
        prompted_forward,
    )
    from promptkit.recipes import load, load_recipe_data

    recipe = load(recipe_name)
    data_seed = int(run_dir.parent.name.lstrip("d")) if run_dir.parent.name.startswith("d") else recipe.data.seed
    recipe = recipe.replace(data=dataclasses.replace(recipe.data, seed=data_seed))
    data = load_recipe_data(recipe)
    backbone = load_backbone(Path(recipe.source).parent / recipe.pretrain.checkpoint.format(seed=data_seed),
                             recipe=recipe)
    prompter = MissingModalityPrompter.from_pretrained(backbone, run_dir / "prompt" / "adapter").eval()
    results = {}
    for part in PARTS:
        with removed(prompter, part):
            results[part] = evaluate_protocol(prompted_forward(prompter), data.splits["valid"], recipe.data.metric,
                                              rates=(), seed=recipe.eval.seed)
    out = {"run": str(run_dir), "data_seed": data_seed,
           "avg": {p: 100 * r.cases["avg"]["non0_acc2"] for p, r in results.items()}}
    out["removal_cost"] = {p: paired_difference(results[p], results["intact"], "avg", "non0_acc2", n_boot=200).to_dict()
                           for p in PARTS[1:]}
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.contribution", description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", default="mult-synth")
    p.add_argument("--runs", type=Path, nargs="+", required=True, help="run directories holding prompt/adapter")
    p.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    runs = [score_run(args.recipe, r) for r in args.runs]
    from promptkit.evaluation import summarize_over_seeds

    summary = {part: summarize_over_seeds([r["removal_cost"][part]["mean"] for r in runs]) for part in PARTS[1:]}
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Removing one part of the trained prompter: paired difference on the VALIDATION split "
                        "(six-case avg, non0_acc2 points)")
    table.add_column("run")
    for part in PARTS[1:]:
        table.add_column(part, justify="right")
    for r in runs:
        table.add_row(r["run"], *(f"{r['removal_cost'][q]['mean']:+.2f} ± {r['removal_cost'][q]['se']:.2f}" for q in PARTS[1:]))
    table.add_row("mean ± SE over runs", *(f"{summary[q]['mean']:+.2f} ± {summary[q]['se']:.2f}" for q in PARTS[1:]))
    Console(width=140).print(table)
    payload = {"benchmark": "contribution", "split": "valid", "recipe": args.recipe, "runs": runs,
               "summary": summary, "machine": machine_info("cpu")}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "contribution.json", payload)
    return payload


if __name__ == "__main__":
    main(sys.argv[1:])
