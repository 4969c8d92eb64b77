"""``python -m benchmarks.pretrained``: the pre-trained backbones the synthetic recipes ship.

Like a toolkit that ships pre-trained weights, promptkit's ``*-synth`` recipes adapt a backbone
that was pre-trained once, on complete data of the synthetic generator's large *source* domain
(CMU-MOSEI-like), instead of pre-training on the small target set they adapt on. This script
produces those files: for each data seed it runs the recipe's pretrain stage on its
``[data] pretrain_on = "source"`` data and writes the best-validation weights to the recipe's
``[pretrain] checkpoint`` path (``{seed}`` there is the data seed), with a JSON record beside
it (command, seconds, torch version and thread count, sha256 of the file and of its tensors).

The training is seeded end to end, so the same command on the same torch version, thread count and
CPU should give the same tensors; ``--check`` retrains and compares the tensors' sha256 (names,
dtypes, shapes and bytes: the file's own bytes also hold metadata that safetensors writes in no
fixed order). Synthetic data, NOT CMU-MOSI.

    python -m benchmarks.pretrained --recipe recipes/mult-synth.toml --data-seeds 0 1
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from promptkit._atomic import atomic_write_bytes
from promptkit.backbone_files import BACKBONE_FILE
from promptkit.recipes import Recipe, load, load_pretrain_data, load_recipe_data
from promptkit.train.pretrain import pretrain


def checkpoint_path(recipe: Recipe, data_seed: int) -> Path:
    """Where ``recipe`` keeps its backbone for ``data_seed`` (``{seed}`` filled in)."""
    if recipe.pretrain.checkpoint is None:
        raise ValueError(f"recipe {recipe.source} names no [pretrain] checkpoint to write")
    path = Path(recipe.pretrain.checkpoint.format(seed=data_seed))
    if path.is_absolute() or not recipe.source:
        return path
    return Path(recipe.source).resolve().parent / path  # beside the recipe, where run_pipeline looks


def for_data_seed(recipe: Recipe, data_seed: int) -> Recipe:
    """``recipe`` on data seed ``data_seed``, pre-training seeded by it too, trained (no checkpoint)."""
    data = dataclasses.replace(recipe.data, seed=data_seed)
    pre = dataclasses.replace(recipe.pretrain, seed=data_seed, checkpoint=None)
    return recipe.replace(data=data, pretrain=pre)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tensors_sha256(path: Path) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order."""
    from promptkit.checkpoint import load_checkpoint

    tensors, _ = load_checkpoint(path)
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def train_one(recipe: Recipe, data_seed: int, out: Path, device: str, progress: bool) -> dict:
    """Pre-train for one data seed and copy the weights to ``out``; returns the record."""
    r = for_data_seed(recipe, data_seed)
    target = load_recipe_data(r)
    source = load_pretrain_data(r, target)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="promptkit-pretrained-") as tmp:
        result = pretrain(r, source, Path(tmp), device=device, progress=progress, overwrite=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out, (Path(tmp) / BACKBONE_FILE).read_bytes())
    return {
        "file": out.name,
        "sha256": sha256(out),
        "tensors_sha256": tensors_sha256(out),
        "data": source.description,
        "data_seed": data_seed,
        "best_epoch": result.best_epoch,
        "source_test": result.test,
        "seconds": time.perf_counter() - t0,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "command": f"OMP_NUM_THREADS={torch.get_num_threads()} python -m benchmarks.pretrained --recipe {recipe.source} "
                   f"--data-seeds {data_seed}",
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.pretrained", description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", required=True, help="a recipe with [pretrain] checkpoint and [data] pretrain_on")
    p.add_argument("--data-seeds", type=int, nargs="+", default=[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--check", action="store_true", help="retrain into a temporary file and compare the tensors' sha256")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    recipe = load(args.recipe)
    status = 0
    for seed in args.data_seeds:
        out = checkpoint_path(recipe, seed)
        if args.check:
            with tempfile.TemporaryDirectory() as tmp:
                record = train_one(recipe, seed, Path(tmp) / out.name, args.device, not args.quiet)
                same = out.is_file() and record["tensors_sha256"] == tensors_sha256(out)
                print(f"{out}: {'identical' if same else 'DIFFERENT'} tensors "
                      f"(retrained tensors sha256 {record['tensors_sha256'][:16]})")
                status |= 0 if same else 1
            continue
        record = train_one(recipe, seed, out, args.device, not args.quiet)
        atomic_write_bytes(out.with_suffix(".json"), json.dumps(record, indent=2).encode())
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {record['seconds']:.0f} s, "
              f"source test {record['source_test']})")
    return status


if __name__ == "__main__":
    sys.exit(main())
