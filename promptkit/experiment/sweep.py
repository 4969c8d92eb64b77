"""Grid sweeps over recipe settings and training seeds: ``promptkit sweep``.

A sweep is a recipe, a grid of overrides and a list of training seeds. Every *cell* of the grid
(one value per axis, one seed) is one :func:`promptkit.experiment.run_pipeline` run in its own
directory, scored on the same fixed masks as every other cell (``[eval] seed`` does not change).

    promptkit sweep --recipe mult-synth --set prompt.eta=0.1,0.3,0.5 --seeds 0-4 --jobs 2

Axes are dotted recipe keys, ``section.field`` or ``section.table.key``
(``prompt.prompter.prompt_length=4,16``); values are TOML literals (``true``, ``0.5``, ``"data"``).
The seed sets ``[prompt] seed``, which seeds the prompt stage and every method's training.

Each cell runs in ``cells/<name>/``, its name readable and injective:
``prompt.eta=0.3,seed=1@3f2a9c1d``, the axis values (characters outside ``[\\w.=,+-]`` as ``_``) and
8 hex digits of the sha256 of the exact overrides and seed, so two cells never share a directory
(``"ck/a.safetensors"`` and ``"ck_a.safetensors"`` read alike but hash apart). Everything is checked
(the grid, every cell's recipe, the methods, the device, ``jobs``) before anything is written.

Resumable: a cell whose ``protocol.json`` exists is read back, not re-run, and an interrupted cell
continues from its last checkpoint; ``sweep.json`` records the grid and every cell's directory, and a
second sweep into the same directory with another recipe or grid is refused. A directory written by
an older promptkit (cells named without the hash) is resumed under its old names where those are
distinct, and refused where two cells shared one. The results land in one tidy CSV, ``sweep.csv``:
one row per cell × method × setting (case or missing rate) × metric; ``timing.json`` keeps the wall
time of every invocation that ran cells.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from .. import recipes
from .._atomic import atomic_write_bytes
from ..evaluation import rows_to_csv
from ..recipes import Recipe, load
from ..train.device import check_compile, resolve_device
from ..train.run_dir import code_change, code_identity
from . import pipeline
from .grid import (
    SweepCell,
    SweepError,
    apply_overrides,
    expand_grid,
    literal,
    parse_assignment,
    parse_seeds,
)
from ..methods import default_methods
from .pipeline import check_methods

__all__ = [
    "CSV_COLUMNS",
    "SweepCell",
    "SweepError",
    "apply_overrides",
    "cell_dirs",
    "expand_grid",
    "parse_assignment",
    "parse_seeds",
    "run_sweep",
    "sweep_rows",
    "sweep_timing",
]

CSV_COLUMNS = ("cell", "seed", "method", "setting", "metric", "value")
"""The fixed columns of ``sweep.csv``; the grid's axes come between ``cell`` and ``seed``."""
SWEEP_FILE = "sweep.json"
TIMING_FILE = "timing.json"
CELL_DONE = "protocol.json"
CELL_NAMING = 2
"""``sweep.json``'s ``cell_naming``: 2 is ``<readable>@<hash>``; a file without it named cells ``<readable>``."""


def run_sweep(
    recipe: Recipe | str | Path,
    axes: Mapping[str, Sequence[Any]],
    seeds: Sequence[int],
    out_dir: str | Path,
    *,
    methods: Sequence[str] | None = None,
    jobs: int = 1,
    device: str | None = None,
    data_path: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Run every cell not yet finished; write and return ``out_dir/sweep.csv``.

    Everything is checked before anything is written (a wrong argument leaves no ``sweep.json``
    to block the corrected command): the grid, every cell's recipe, the methods, the device,
    ``jobs``, ``data_path`` and the directory's earlier sweep.

    Args:
        recipe: a :class:`Recipe`, or a recipe file / shipped recipe name.
        axes: dotted key → values (see :func:`parse_assignment`); may be empty (seeds only).
        seeds: training seeds (``[prompt] seed``).
        methods: what each cell trains (``run_pipeline``'s ``methods``); None: the recipe's.
        jobs: cells run in this many processes at once, one torch thread each.

    Raises:
        SweepError: ``out_dir`` holds a sweep of another recipe, grid, seed list or methods; a
            ``prompt.seed`` axis beside ``seeds``; ``jobs`` < 1; a missing ``data_path``.
        RecipeError: an override names no recipe key or has the wrong type.
        KeyError, ValueError: an unknown method or device (``run_pipeline``'s own errors).
    """
    base = recipe if isinstance(recipe, Recipe) else load(recipe)
    out_dir = Path(out_dir)
    seeds = parse_seeds(seeds)
    cells = expand_grid(axes, seeds)
    recipes = {c.key: apply_overrides(base, c.as_dict(), c.seed) for c in cells}  # every cell checked first
    _check_arguments(list(recipes.values()), methods, jobs, device, data_path)
    dirs = cell_dirs(out_dir, cells)
    _check_finished_cells(out_dir, cells, dirs, recipes)
    _claim(out_dir, base, axes, seeds, methods, cells)
    todo = [c for c in cells if not (out_dir / "cells" / dirs[c.key] / CELL_DONE).is_file()]
    args = [(recipes[c.key], str(out_dir / "cells" / dirs[c.key]), methods, device, data_path) for c in todo]
    t0 = time.perf_counter()
    _run_cells(args, [dirs[c.key] for c in todo], jobs, progress, len(cells))
    if todo:
        _log_timing(out_dir, time.perf_counter() - t0, len(todo), jobs)
    rows = sweep_rows(out_dir, cells, list(axes))
    path = out_dir / "sweep.csv"

    atomic_write_bytes(path, rows_to_csv([*CSV_COLUMNS[:1], *axes, *CSV_COLUMNS[1:]], rows))
    return path


def _check_arguments(recipes: Sequence[Recipe], methods: Sequence[str] | None, jobs: int, device: str | None,
                     data_path: str | Path | None) -> None:
    """What ``run_pipeline`` would refuse in the first cell, refused before the sweep writes anything."""

    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise SweepError(f"--jobs must be an integer of at least 1, got {jobs!r}")
    if data_path is not None and not Path(data_path).is_file():
        raise SweepError(f"--data {str(data_path)!r}: no such file")
    resolve_device(device)
    if methods is not None:
        check_methods(methods)
    for r in recipes:
        if methods is None:
            check_methods(r.prompt.methods or default_methods())
        for stage in (r.pretrain, r.prompt):
            check_compile(stage)


def cell_dirs(out_dir: str | Path, cells: Sequence[SweepCell]) -> dict[str, str]:
    """Each cell's directory name under ``out_dir/cells/``, by :attr:`SweepCell.key`.

    A new sweep (or one whose ``sweep.json`` records them) uses :attr:`SweepCell.name`; a sweep that
    an older promptkit wrote (no ``cell_naming`` in ``sweep.json``) keeps its readable names, so it
    resumes where it stopped, unless two of its cells share one.

    Raises:
        SweepError: an older sweep whose cells share a directory (their results cannot be told apart).
    """
    path = Path(out_dir) / SWEEP_FILE
    prev = json.loads(path.read_text()) if path.is_file() else None
    if prev is None or prev.get("cell_naming") is not None:
        recorded = {} if prev is None else {c["key"]: c["dir"] for c in prev.get("cells", [])}
        return {c.key: recorded.get(c.key, c.name) for c in cells}
    shared: dict[str, SweepCell] = {}
    for c in cells:
        other = shared.setdefault(c.label, c)
        if other is not c:
            raise SweepError(
                f"{path} was written by an older promptkit that named cells without a hash, and two cells of this "
                f"grid share the directory cells/{c.label} ({other.key} and {c.key}), so their results cannot be "
                f"told apart; run the sweep into a new directory"
            )
    return {c.key: c.label for c in cells}


def _claim(out_dir: Path, recipe: Recipe, axes: Mapping[str, Sequence[Any]], seeds: Sequence[int],
           methods: Sequence[str] | None, cells: Sequence[SweepCell]) -> None:
    """Write ``sweep.json`` (with every cell's directory), or refuse a directory whose
    ``sweep.json`` describes another sweep."""
    record = {"recipe": recipe.to_dict(), "recipe_source": recipe.source, "axes": {k: list(v) for k, v in axes.items()},
              "seeds": list(seeds), "methods": list(methods) if methods is not None else None,
              "cell_naming": CELL_NAMING,
              "cells": [{"dir": c.name, "key": c.key, "overrides": c.as_dict(), "seed": c.seed} for c in cells]}
    path = out_dir / SWEEP_FILE
    if path.is_file():
        prev = json.loads(path.read_text())
        differ = [k for k in ("recipe", "axes", "seeds", "methods") if prev.get(k) != json.loads(json.dumps(record[k]))]
        if differ:
            raise SweepError(f"{out_dir} holds another sweep (its {', '.join(differ)} differ); "
                             f"use another directory to run this one")
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(record, indent=2, default=str).encode())


def _log_timing(out_dir: Path, seconds: float, cells: int, jobs: int) -> None:
    """Append this invocation's wall time to ``timing.json`` (one entry per invocation that ran cells)."""
    path = out_dir / TIMING_FILE
    log = json.loads(path.read_text()) if path.is_file() else []
    log.append({"seconds": seconds, "cells": cells, "jobs": jobs})
    atomic_write_bytes(path, json.dumps(log, indent=2).encode())


def sweep_timing(out_dir: str | Path) -> list[dict[str, Any]]:
    """The wall time of every invocation that ran cells of the sweep in ``out_dir`` (``timing.json``)."""
    path = Path(out_dir) / TIMING_FILE
    return json.loads(path.read_text()) if path.is_file() else []


def _run_cells(args: list[tuple], names: list[str], jobs: int, progress: bool, total: int) -> None:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    bar = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("{task.description}"), disable=not progress)
    with bar:
        task = bar.add_task("", total=total, completed=total - len(args))
        if jobs <= 1 or len(args) <= 1:
            for a, name in zip(args, names):
                bar.update(task, description=name)
                run_cell(*a)
                bar.advance(task)
            return
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        with ProcessPoolExecutor(min(jobs, len(args))) as pool:
            futures = {pool.submit(run_cell, *a, threads=1): name for a, name in zip(args, names)}
            try:
                for fut in as_completed(futures):
                    fut.result()  # a failed cell stops the sweep with its own error
                    bar.update(task, description=futures[fut])
                    bar.advance(task)
            except BaseException:
                pool.shutdown(cancel_futures=True)  # cells not started stay for the resumed sweep
                raise


def run_cell(recipe: Recipe, cell_dir: str, methods: Sequence[str] | None, device: str | None,
             data_path: str | Path | None, threads: int | None = None) -> None:
    """One cell: ``run_pipeline`` into ``cell_dir`` (resumed where it stopped)."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)

    # looked up at call time, so a caller (or a test) may replace them
    data = recipes.load_recipe_data(recipe, data_path)
    pipeline.run_pipeline(recipe, data, cell_dir, device=device, resume=True, progress=False,
                          data_path=data_path, methods=methods)


def _check_finished_cells(
    out_dir: Path, cells: Sequence[SweepCell], dirs: Mapping[str, str], recipes: Mapping[str, Recipe]
) -> None:
    """Refuse to read back a finished cell that other code produced.

    A finished cell (its ``protocol.json`` exists) is read back, not re-run, so its ``code`` record
    (the promptkit version and source digest, and a user factory's module source:
    :func:`~promptkit.train.run_dir.code_identity`) must be what this code would record.

    Raises:
        SweepError: naming the cell, the entry that differs (old and new) and what to do.
    """

    for cell in cells:
        path = out_dir / "cells" / dirs[cell.key] / CELL_DONE
        if not path.is_file():
            continue
        factory = recipes[cell.key].backbone.factory
        if factory is not None:  # a sweep is a run: it imports the recipe's factory to read its source
            import backbones

            folder = recipes[cell.key].folder()
            backbones.import_factory(factory, [folder] if folder else [])
        try:
            then = json.loads(path.read_text()).get("code")
        except (OSError, ValueError, AttributeError):
            then = None
        changed = code_change(then, code_identity(factory), CELL_DONE)
        if changed:
            raise SweepError(
                f"cell {dirs[cell.key]} of the sweep in {out_dir} was produced by other code ({changed}), so its "
                f"results would be read back as this code's; remove {path.parent} to re-run it, or run the sweep "
                "into a new directory"
            )


def sweep_rows(out_dir: str | Path, cells: Iterable[SweepCell], axes: Sequence[str]) -> list[list[Any]]:
    """Tidy rows ``[cell, *axis values, seed, method, setting, metric, value]`` of the finished
    cells (``cell`` is the cell's directory name); a setting is a case name, ``complete``, ``avg``
    or ``rate=0.3``."""
    cells = list(cells)
    dirs = cell_dirs(out_dir, cells)
    rows: list[list[Any]] = []
    for cell in cells:
        path = Path(out_dir) / "cells" / dirs[cell.key] / CELL_DONE
        if not path.is_file():
            continue
        values = cell.as_dict()
        head = [dirs[cell.key], *[literal(values[a]) for a in axes], cell.seed]
        for method, result in json.loads(path.read_text())["results"].items():
            settings = {**result["cases"], **{f"rate={r}": m for r, m in result.get("rates", {}).items()}}
            for setting, metrics in settings.items():
                rows += [[*head, method, setting, metric, value] for metric, value in metrics.items()]
    return rows
