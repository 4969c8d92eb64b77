"""The ``promptkit`` console script.

    promptkit run --recipe R [--data PATH] [--device D] [--out DIR] [--resume] [--overwrite] [--cggm]
                  [--compile [BACKEND]]
    promptkit train --recipe R [--data PATH] [--device D] [--epochs N] [--out DIR] [--resume] [--overwrite] [--cggm]
                    [--compile [BACKEND]]
    promptkit sweep --recipe R --set KEY=V1,V2,... [--set ...] [--seeds 0-4] [--method M ...] [--jobs N]
                    [--out DIR] [--device D] [--data PATH]
    promptkit eval --recipe R --checkpoint C [--data PATH] [--device D] [--json]
    promptkit data describe [--recipe R] [--data PATH]
    promptkit recipes list
    promptkit backbones list

``--compile [BACKEND]`` sets the trained stages' ``compile`` (the flag alone means inductor).

Each sub-command is added by one small ``add_<name>(subparsers)`` function listed in
:data:`SUBCOMMANDS`. Errors print one line, ``promptkit: error: ...`` (for ``run``, after the
stage that failed: ``promptkit: error: in stage 'pretrain': ...``), and exit with status 2 (set
``PROMPTKIT_TRACEBACK=1`` to see the traceback instead).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .methods import list_methods
from .recipes import Recipe, check_compile_backend, list_recipes, load, load_recipe_data

DEFAULT_RUNS = Path("runs")


# --- shared options --------------------------------------------------------------------------
def _recipe_arg(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--recipe", required=required, help="a recipe .toml file or a shipped recipe name (mult-synth)")


def _data_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", metavar="PATH", help="a data file (MulT/MMSA pickle, h5); replaces the recipe's [data] path")


def _device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")


def _with_epochs(recipe: Recipe, section: str, epochs: int | None) -> Recipe:
    if epochs is None:
        return recipe
    if epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {epochs}")
    return recipe.replace(**{section: dataclasses.replace(getattr(recipe, section), epochs=epochs)})


def _compile_arg(p: argparse.ArgumentParser, sections: str) -> None:
    p.add_argument(
        "--compile", nargs="?", const="inductor", default=None, metavar="BACKEND",
        help=f"train under torch.compile with BACKEND (alone: inductor; also aot_eager, eager); overrides "
             f"{sections} compile. Meant for GPUs: on a small CPU compiling costs minutes and did not speed MulT up",
    )


def _with_compile(recipe: Recipe, sections: Sequence[str], backend: str | None) -> Recipe:
    """``recipe`` with ``compile = backend`` in each stage section (unchanged when None)."""
    if backend is None:
        return recipe
    check_compile_backend(backend, "--compile")
    return recipe.replace(**{s: dataclasses.replace(getattr(recipe, s), compile=backend) for s in sections})


def _with_log_with(recipe: Recipe, sections: Sequence[str], trackers: Sequence[str] | None) -> Recipe:
    """``recipe`` with ``log_with = trackers`` in each stage section (unchanged when None)."""
    if trackers is None:
        return recipe
    from .trackers import check_log_with

    check_log_with(trackers)
    return recipe.replace(**{s: dataclasses.replace(getattr(recipe, s), log_with=list(trackers)) for s in sections})


def default_run_dir(recipe: Recipe) -> Path:
    """``runs/<recipe name>`` (the file stem when the recipe has no name)."""
    return DEFAULT_RUNS / (recipe.name or Path(recipe.source or "recipe").stem)


# --- train -----------------------------------------------------------------------------------
def _training_parser(
    sub: argparse._SubParsersAction, name: str, *, help: str, epochs: dict[str, str], out: str, resume: str,
    cggm: str, compile_sections: str,
) -> argparse.ArgumentParser:
    """The parser of a sub-command that trains (train, run), with the options both have: --recipe,
    --data, --device, an epochs override per ``epochs`` item (option -> the section it overrides),
    --out (default ``out``), --resume, --overwrite, --cggm, --compile (over ``compile_sections``), --quiet;
    ``resume`` and ``cggm`` are those options' help."""
    p = sub.add_parser(name, help=help)
    _recipe_arg(p)
    _data_arg(p)
    _device_arg(p)
    for option, section in epochs.items():
        p.add_argument(option, type=int, help=f"override [{section}] epochs")
    p.add_argument("--out", type=Path, help=f"output directory (default: {out})")
    p.add_argument("--resume", action="store_true", help=resume)
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    p.add_argument("--cggm", action="store_true", help=cggm)
    _compile_arg(p, compile_sections)
    p.add_argument("--log-with", nargs="+", metavar="TRACKER", default=None,
                   help=f"experiment trackers for {compile_sections}: csv, tensorboard, wandb, ... (logs in --out/.../logs)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or tables")
    return p


def add_train(sub: argparse._SubParsersAction) -> None:
    p = _training_parser(
        sub, "train", help="pre-train the recipe's backbone on complete data", epochs={"--epochs": "pretrain"},
        out="runs/<recipe>/pretrain", resume="continue the run in --out from its last checkpoint",
        cggm="train with CGGM gradient modulation ([cggm] table)", compile_sections="[pretrain]",
    )
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from .backbone_files import BACKBONE_FILE
    from .train import pretrain
    from .train.distributed import is_main_process

    recipe = _with_epochs(load(args.recipe), "pretrain", args.epochs)
    recipe = _with_compile(recipe, ["pretrain"], args.compile)
    recipe = _with_log_with(recipe, ["pretrain"], args.log_with)
    data = load_recipe_data(recipe, args.data)
    out = args.out or default_run_dir(recipe) / "pretrain"
    result = pretrain(recipe, data, out, cggm=args.cggm, resume=args.resume, overwrite=args.overwrite,
                      device=args.device, progress=not args.quiet)
    if is_main_process():
        print(f"backbone saved to {Path(out) / BACKBONE_FILE} (best epoch {result.best_epoch}); "
              f"test {result.primary} = {result.test[result.primary]:.4f}; results in {Path(out) / 'results.json'}")
    return 0


# --- eval ------------------------------------------------------------------------------------
def add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="test-split metrics of a saved backbone")
    _recipe_arg(p)
    p.add_argument("--checkpoint", required=True, type=Path, help="a backbone.safetensors written by train")
    _data_arg(p)
    _device_arg(p)
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from .backbone_files import check_backbone_fits, load_backbone
    from .train import evaluate
    from .train.device import resolve_device
    from .train.forward import default_forward

    recipe = load(args.recipe)
    data = load_recipe_data(recipe, args.data)
    device = resolve_device(args.device)
    model = load_backbone(args.checkpoint, device=device, recipe=recipe)  # refused if another backbone made it
    check_backbone_fits(model, data, f"checkpoint {args.checkpoint}")
    forward = default_forward(data.modalities, False, recipe.hook_spec())  # [hooks]: forward keywords, output
    metrics = evaluate(model, data.splits["test"], task=data.task, modalities=data.modalities, forward=forward,
                       metric_kind=recipe.data.metric, batch_size=recipe.pretrain.batch_size, device=device)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        _print_table(f"test split of {data.name} ({len(data.splits['test'])} samples), {args.checkpoint}",
                     ["metric", "value"], [[k, f"{v:.4f}"] for k, v in metrics.items()])
    return 0


# --- data describe ---------------------------------------------------------------------------
def add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="inspect data")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="{describe}")
    d = dsub.add_parser("describe", help="splits, shapes, task and provenance of a data set")
    _recipe_arg(d, required=False)
    _data_arg(d)
    d.set_defaults(func=cmd_data_describe)


def cmd_data_describe(args: argparse.Namespace) -> int:
    """Print a data set's splits, shapes, task and labels: the recipe's data (``--data`` replacing its
    path), or, with ``--data`` alone, the file as :func:`promptkit.data.load_data` reads it (its task
    from its labels: h5 class ids are classification, not a default recipe's regression). Imports
    nothing the recipe names (its factory, a hook output function): describing builds no model."""
    if args.recipe is None and args.data is None:
        raise ValueError("data describe needs --recipe R or --data PATH")
    if args.recipe:
        data = load_recipe_data(load(args.recipe), args.data)
    else:
        from .data import load_data

        data = load_data(args.data)
    print(f"{data.name}: {data.description}")
    print(f"task {data.task}, out_dim {data.out_dim}, modalities {', '.join(data.modalities)}")
    rows = []
    for split, ds in data.splits.items():
        shapes = ", ".join(f"{m} ({len(ds)}, 3, {data.seq_lens[m]}) token ids < {data.feature_dims[m]}"
                           if m in data.token_modalities else
                           f"{m} ({len(ds)}, {data.seq_lens[m]}, {data.feature_dims[m]})" for m in data.modalities)
        rows.append([split, str(len(ds)), shapes, _label_summary(ds.labels, data.task)])
    _print_table("splits", ["split", "samples", "features (N, T, D)", "labels"], rows)
    return 0


def _label_summary(labels: Any, task: str) -> str:
    if task == "regression":
        y = labels.float()
        return f"mean {y.mean():.3f}, std {y.std():.3f}, range [{y.min():.2f}, {y.max():.2f}]"
    if labels.dim() == 2:
        return "positives per task " + str(labels.sum(0).tolist())
    values, counts = labels.unique(return_counts=True)
    return "counts " + ", ".join(f"{v}: {c}" for v, c in zip(values.tolist(), counts.tolist()))


# --- listings --------------------------------------------------------------------------------
def add_recipes(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recipes", help="shipped recipes")
    rsub = p.add_subparsers(dest="recipes_command", required=True, metavar="{list}")
    rsub.add_parser("list", help="list the shipped recipes").set_defaults(func=cmd_recipes_list)


def cmd_recipes_list(args: argparse.Namespace) -> int:
    rows = []
    for path in list_recipes():
        r = load(path, check_backbone=False)
        rows.append([path.stem, r.backbone.label, r.data.source, r.description])
    _print_table("shipped recipes", ["recipe", "backbone", "data", "description"], rows)
    return 0


def add_backbones(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backbones", help="registered backbones")
    bsub = p.add_subparsers(dest="backbones_command", required=True, metavar="{list}")
    bsub.add_parser(
        "list", help="list the registered backbones (shipped ones and those of installed packages' "
                     "promptkit.backbones entry points)",
    ).set_defaults(func=cmd_backbones_list)


def cmd_backbones_list(args: argparse.Namespace) -> int:
    """A row per registered backbone: its name, the module that defines it, its docstring's first paragraph."""
    import backbones

    rows = []
    for name in backbones.list_backbones():
        fn = backbones.backbone_builder(name)
        summary = (getattr(fn, "__doc__", None) or "").strip().split("\n\n")[0]
        rows.append([name, getattr(fn, "__module__", None) or "?", " ".join(summary.split()).replace("``", "")])
    _print_table("registered backbones", ["name", "module", "description"], rows)
    return 0


# --- run -------------------------------------------------------------------------------------
def add_run(sub: argparse._SubParsersAction) -> None:
    p = _training_parser(
        sub, "run", help="pretrain -> wrap -> prompt stage -> missing-modality evaluation",
        epochs={"--pretrain-epochs": "pretrain", "--prompt-epochs": "prompt"}, out="runs/<recipe>",
        resume="continue an interrupted run in --out", cggm="train both stages with CGGM ([cggm] table)",
        compile_sections="[pretrain] and [prompt]",
    )
    p.add_argument("--method", nargs="+", metavar="M", default=None,
                   help=f"what trains beside the zero-filled reference ({', '.join(list_methods())}); default: the "
                        "recipe's [prompt] methods")
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from .experiment.pipeline import run_pipeline

    recipe = _with_epochs(load(args.recipe), "pretrain", args.pretrain_epochs)
    recipe = _with_epochs(recipe, "prompt", args.prompt_epochs)
    recipe = _with_compile(recipe, ["pretrain", "prompt"], args.compile)
    recipe = _with_log_with(recipe, ["pretrain", "prompt"], args.log_with)
    data = load_recipe_data(recipe, args.data)
    out = args.out or default_run_dir(recipe)
    run_pipeline(recipe, data, out, device=args.device, resume=args.resume, overwrite=args.overwrite,
                 progress=not args.quiet, cggm=args.cggm, data_path=args.data, methods=args.method)
    if args.quiet:  # the tables are off; say at least where the results went
        print(f"results in {Path(out)}")
    return 0


def add_sweep(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="a grid of recipe settings x training seeds, one run each; resumable, one tidy CSV")
    _recipe_arg(p)
    _data_arg(p)
    _device_arg(p)
    p.add_argument("--set", dest="axes", action="append", default=[], metavar="KEY=V1,V2",
                   help="an axis: a dotted recipe key and its values, TOML literals (prompt.eta=0.1,0.3; "
                        "prompt.prompter.prompt_length=4,16); repeat for a grid")
    p.add_argument("--seeds", default="0", help="training seeds ([prompt] seed): 0-4, 0,2,7 (default 0)")
    p.add_argument("--method", nargs="+", metavar="M", default=None,
                   help="what each cell trains (as `promptkit run --method`); default: the recipe's")
    p.add_argument("--jobs", type=int, default=1, help="cells run in this many processes (one thread each)")
    p.add_argument("--out", type=Path, default=None, help="sweep directory (default runs/sweep-<recipe>)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    from .experiment.sweep import SweepError, parse_assignment, parse_seeds, run_sweep

    axes: dict[str, list[Any]] = {}
    for text in args.axes:
        key, values = parse_assignment(text)
        if key in axes:
            raise SweepError(f"--set {key} is given twice")
        axes[key] = values
    if args.jobs < 1:
        raise SweepError(f"--jobs must be at least 1, got {args.jobs}")
    recipe = load(args.recipe)
    out = args.out or DEFAULT_RUNS / f"sweep-{recipe.name or Path(args.recipe).stem}"
    path = run_sweep(recipe, axes, parse_seeds(args.seeds), out, methods=args.method, jobs=args.jobs,
                     device=args.device, data_path=args.data, progress=not args.quiet)
    print(f"results in {path}")
    return 0


# --- main ------------------------------------------------------------------------------------
SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_run,
    add_sweep,
    add_train,
    add_eval,
    add_data,
    add_recipes,
    add_backbones,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="promptkit", description="MPLMM prompts and CGGM for MSA backbones")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def _print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*r)
    Console().print(table)


def _one_line(e: BaseException) -> str:
    """The message on one line, ended by the exception type (a KeyError's bare key is no message),
    after the stage of ``promptkit run`` it left when it left one (``in stage 'pretrain': ...``;
    the stage is the attribute ``promptkit_stage`` that :func:`promptkit.experiment.pipeline.stage`
    sets)."""
    msg = e.args[0] if isinstance(e, KeyError) and len(e.args) == 1 else str(e)
    msg = " ".join(str(msg).split())
    line = f"{msg} ({type(e).__name__})" if msg else type(e).__name__
    stage = getattr(e, "promptkit_stage", None)
    return f"in stage {stage!r}: {line}" if isinstance(stage, str) else line


def main(argv: Sequence[str] | None = None) -> int:
    """Run one sub-command; returns the exit status (0, or 2 on an error)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("promptkit: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # one clear line, no traceback
        if os.environ.get("PROMPTKIT_TRACEBACK"):
            raise
        print(f"promptkit: error: {_one_line(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
