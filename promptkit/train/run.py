"""``promptkit run``: pretrain → wrap → prompt stage → evaluation protocol, in one call."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..recipes import Recipe
from .pretrain import BACKBONE_FILE, load_backbone, pretrain
from .prompt_stage import prompt_tune
from .protocol import evaluate_protocol, prompted_forward, zero_filled_forward

BASELINE = "zero-filled (frozen backbone)"
PROMPTED = "MPLMM prompts (promptkit)"


def run_pipeline(
    recipe: Recipe,
    data: Any,
    out_dir: str | Path,
    *,
    device: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    cggm: bool = False,
) -> dict[str, Any]:
    """Run every stage and write ``out_dir/{pretrain,prompt}/`` and ``out_dir/protocol.{json,csv,png}``.

    Each stage is compiled when its ``compile`` setting asks for it; a backend that cannot run here
    is refused before the pretrain stage starts. The evaluation uses the compiled prompter.

    Returns:
        a summary: stage seconds, trainable share, and the protocol results per model.
    """
    from .. import report
    from .engine import check_compile, resolve_device

    out_dir = Path(out_dir)
    dev = resolve_device(device)
    for stage in (recipe.pretrain, recipe.prompt):
        check_compile(stage)  # both stages' backends, before the first one trains
    opts = dict(device=dev, resume=resume, overwrite=overwrite, progress=progress)
    times: dict[str, float] = {}

    t0 = time.perf_counter()
    pre = pretrain(recipe, data, out_dir / "pretrain", cggm=cggm, **opts)
    times["pretrain_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    backbone = load_backbone(out_dir / "pretrain" / BACKBONE_FILE, device=dev)
    prompter, prompt_result = prompt_tune(recipe, data, backbone, out_dir / "prompt", cggm=cggm, **opts)
    times["prompt_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    kind = recipe.data.metric
    test = data.splits["test"]
    eval_kw = dict(rates=recipe.eval.missing_rates, seed=recipe.eval.seed, batch_size=256, device=dev)
    bare = load_backbone(out_dir / "pretrain" / BACKBONE_FILE, device=dev)  # the pre-trained head, untouched
    prompter.eval()
    results = {
        BASELINE: evaluate_protocol(zero_filled_forward(bare, data.modalities), test, kind, **eval_kw),
        PROMPTED: evaluate_protocol(prompted_forward(prompter), test, kind, **eval_kw),
    }
    times["eval_s"] = time.perf_counter() - t0
    share = prompter.trainable_summary()
    summary = {
        "data": data.description,
        "recipe": recipe.source,
        "seconds": times,
        "trainable": share,
        "pretrain_test": pre.test,
        "prompt_best_epoch": prompt_result.best_epoch,
    }
    report.save_protocol_results(out_dir, results, summary)
    report.plot_rate_sweep(out_dir / "protocol.png", results, kind, f"ours on {data.description}")
    if progress:
        report.print_table1(results, kind, data.description)
        report.print_rate_sweep(results, kind)
        prompter.print_trainable_parameters()
        print(
            f"time: pretrain {times['pretrain_s']:.0f} s, prompt stage {times['prompt_s']:.0f} s, "
            f"evaluation {times['eval_s']:.0f} s; results in {out_dir}/protocol.json, .csv, .png"
        )
    return {**summary, "results": {k: r.to_dict() for k, r in results.items()}}
