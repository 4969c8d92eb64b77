"""The ``stages`` section of :mod:`benchmarks.speed`: where a training stage of the main job spends
its time, the MPLMM stage against full fine-tuning.

Each method of the main job's recipe (``recipes/mult-synth.toml``: MPLMM, head only, full
fine-tuning) trains for a few epochs on the recipe's own data in a temporary directory, through the
same :func:`promptkit.methods.get_method` call ``promptkit run`` makes. Its wall time splits into
the training steps (each epoch's ``seconds`` in ``results.json``), validation (``valid_seconds``)
and the rest: loading the backbone, wrapping it, checking the hooks and calibrating the prompts on a
first batch, checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptkit.methods import get_method
from promptkit.methods.controls import FULL_FINETUNE
from promptkit.methods.mplmm import NAME as PROMPTS
from promptkit.recipes import load, load_recipe_data, resolve_recipe_file

if TYPE_CHECKING:
    from .speed import SpeedConfig



def measure_stages(cfg: SpeedConfig) -> dict[str, Any]:
    """Per method: wall seconds, and its split into setup / training steps / validation per epoch."""
    recipe = load(cfg.stages_recipe)
    recipe = dataclasses.replace(recipe, prompt=dataclasses.replace(recipe.prompt, epochs=cfg.stages_epochs))
    if cfg.stages_sizes:
        recipe = dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, sizes=dict(cfg.stages_sizes)))
    data = load_recipe_data(recipe)
    backbone = resolve_recipe_file(recipe, recipe.pretrain.checkpoint.format(seed=recipe.data.seed))
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in recipe.prompt.methods or ():
            spec = get_method(method)
            t0 = time.perf_counter()
            spec(recipe, data, backbone, Path(tmp) / spec.stage_dir, hooks=recipe.hook_spec(), device=cfg.device,
                 progress=False)
            wall = time.perf_counter() - t0
            history = json.loads((Path(tmp) / spec.stage_dir / "results.json").read_text())["history"]
            train = sum(h["seconds"] for h in history)
            valid = sum(h.get("valid_seconds", 0.0) for h in history)
            rows[method] = {"wall_s": wall, "train_s": train, "valid_s": valid, "setup_and_rest_s": wall - train - valid,
                            "epochs": len(history), "train_per_epoch_s": train / len(history),
                            "valid_per_epoch_s": valid / len(history)}
    out: dict[str, Any] = {"recipe": cfg.stages_recipe, "data": data.description, "epochs": cfg.stages_epochs,
                           "train_samples": len(data.splits["train"]), "valid_samples": len(data.splits["valid"]),
                           "methods": rows}
    if PROMPTS in rows and FULL_FINETUNE in rows:
        out["prompts_over_full_finetune"] = rows[PROMPTS]["wall_s"] / rows[FULL_FINETUNE]["wall_s"]
        out["prompts_over_full_finetune_train"] = rows[PROMPTS]["train_s"] / rows[FULL_FINETUNE]["train_s"]
    return out
