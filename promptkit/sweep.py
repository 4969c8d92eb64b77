"""Grid sweeps over recipe settings and training seeds: ``promptkit sweep``.

A sweep is a recipe, a grid of overrides and a list of training seeds. Every *cell* of the grid
(one value per axis, one seed) is one :func:`promptkit.train.run.run_pipeline` run in its own
directory, scored on the same fixed masks as every other cell (``[eval] seed`` does not change).

    promptkit sweep --recipe mult-synth --set prompt.eta=0.1,0.3,0.5 --seeds 0-4 --jobs 2

Axes are dotted recipe keys, ``section.field`` or ``section.table.key``
(``prompt.prompter.prompt_length=4,16``); values are TOML literals (``true``, ``0.5``, ``"data"``).
The seed sets ``[prompt] seed``, which seeds the prompt stage and every method's training.

Resumable: a cell whose ``protocol.json`` exists is read back, not re-run, and an interrupted cell
continues from its last checkpoint; ``sweep.json`` records the grid, and a second sweep into the same
directory with another recipe or grid is refused. The results land in one tidy CSV, ``sweep.csv``:
one row per cell × method × setting (case or missing rate) × metric; ``timing.json`` keeps the wall
time of every invocation that ran cells.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import re
import time
import tomllib
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ._atomic import atomic_write_bytes
from .recipes import Recipe, RecipeError, from_dict, load

__all__ = [
    "CSV_COLUMNS",
    "SweepCell",
    "SweepError",
    "apply_overrides",
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


class SweepError(ValueError):
    """A grid that cannot run: a bad ``--set`` or ``--seeds``, or a directory holding another sweep."""


@dataclass(frozen=True)
class SweepCell:
    """One run of a sweep: a value for every axis, and the training seed."""

    overrides: tuple[tuple[str, Any], ...]
    seed: int

    @property
    def name(self) -> str:
        """A directory name: ``prompt.eta=0.3,seed=1``, characters outside ``[\\w.=,+-]`` replaced by ``_``."""
        parts = [f"{k}={_literal(v)}" for k, v in self.overrides] + [f"seed={self.seed}"]
        return re.sub(r"[^\w.=,+-]", "_", ",".join(parts))

    def as_dict(self) -> dict[str, Any]:
        return dict(self.overrides)


# --- the grid ---------------------------------------------------------------------------------
def parse_assignment(text: str) -> tuple[str, list[Any]]:
    """``"prompt.eta=0.1,0.3"`` → ``("prompt.eta", [0.1, 0.3])``; each value a TOML literal, a
    bare word that is not one (``data``) a string."""
    key, sep, values = text.partition("=")
    key = key.strip()
    if not sep or not key or not values.strip():
        raise SweepError(f"--set {text!r}: expected KEY=V1,V2,... (e.g. prompt.eta=0.1,0.3)")
    if not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+", key):
        raise SweepError(f"--set {text!r}: the key must be dotted, section.field (e.g. prompt.eta)")
    parsed = [_parse_value(v.strip(), text) for v in _split_values(values)]
    if len({json.dumps(v) for v in parsed}) != len(parsed):
        raise SweepError(f"--set {text!r}: a value is listed twice")
    return key, parsed


def _split_values(values: str) -> list[str]:
    """Split on commas outside quotes and brackets (``[1, 2],[3]`` is two values)."""
    out, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(values):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(values[start:i])
            start = i + 1
    return out + [values[start:]]


def _parse_value(raw: str, where: str) -> Any:
    if not raw:
        raise SweepError(f"--set {where!r}: an empty value")
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        if re.fullmatch(r"[\w.+-]+", raw):
            return raw  # a bare word: a string
        raise SweepError(f"--set {where!r}: {raw!r} is not a TOML value") from None


def _literal(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def parse_seeds(text: str | Sequence[int]) -> list[int]:
    """``"0-4"`` → ``[0, 1, 2, 3, 4]``; ``"0,2,7"`` and ``"0-2,9"`` too; a list of ints as given."""
    if not isinstance(text, str):
        seeds = [int(s) for s in text]
    else:
        seeds = []
        for part in text.split(","):
            part = part.strip()
            m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
            if not m:
                raise SweepError(f"--seeds {text!r}: expected N, A-B or a comma list of them (e.g. 0-4)")
            lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
            if hi < lo:
                raise SweepError(f"--seeds {text!r}: range {part} runs backwards")
            seeds += range(lo, hi + 1)
    if not seeds or len(set(seeds)) != len(seeds):
        raise SweepError(f"--seeds {text!r}: at least one seed, none twice")
    return seeds


def expand_grid(axes: Mapping[str, Sequence[Any]], seeds: Sequence[int]) -> list[SweepCell]:
    """Every combination of the axes' values (the first axis slowest), each for every seed."""
    for key, values in axes.items():
        if not values:
            raise SweepError(f"axis {key!r} has no values")
    keys = list(axes)
    return [SweepCell(tuple(zip(keys, combo)), int(seed))
            for combo in itertools.product(*(axes[k] for k in keys)) for seed in seeds]


def apply_overrides(recipe: Recipe, overrides: Mapping[str, Any], seed: int | None = None) -> Recipe:
    """``recipe`` with each dotted key set (and ``[prompt] seed`` = ``seed``), validated again as a
    whole recipe, so a wrong key or type is the recipe loader's clear error naming it."""
    raw = copy.deepcopy(recipe.to_dict())
    for key, value in {**overrides, **({"prompt.seed": seed} if seed is not None else {})}.items():
        node: dict[str, Any] = raw
        *path, last = key.split(".")
        for i, part in enumerate(path):
            if part not in node and i > 0:  # a table below a section, absent: it starts empty
                node[part] = {}
            if not isinstance(node.get(part), dict):
                raise RecipeError(f"sweep key {key!r}: {'.'.join(path[:i + 1])!r} is not a recipe table")
            node = node[part]
        node[last] = copy.deepcopy(value)
    raw = {k: v for k, v in raw.items() if v is not None}
    try:  # the source stays the file, so the recipe's relative paths resolve as before
        return from_dict(raw, source=recipe.source or "<dict>")
    except RecipeError as e:
        raise RecipeError(f"sweep cell {dict(overrides)}: {e}") from None


# --- running ----------------------------------------------------------------------------------
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

    Args:
        recipe: a :class:`Recipe`, or a recipe file / shipped recipe name.
        axes: dotted key → values (see :func:`parse_assignment`); may be empty (seeds only).
        seeds: training seeds (``[prompt] seed``).
        methods: what each cell trains (``run_pipeline``'s ``methods``); None: the recipe's.
        jobs: cells run in this many processes at once, one torch thread each.

    Raises:
        SweepError: ``out_dir`` holds a sweep of another recipe, grid, seed list or methods.
        RecipeError: an override names no recipe key or has the wrong type (before anything runs).
    """
    base = recipe if isinstance(recipe, Recipe) else load(recipe)
    out_dir = Path(out_dir)
    cells = expand_grid(axes, seeds)
    recipes = {c.name: apply_overrides(base, c.as_dict(), c.seed) for c in cells}  # every cell checked first
    _claim(out_dir, base, axes, seeds, methods)
    todo = [c for c in cells if not (out_dir / "cells" / c.name / CELL_DONE).is_file()]
    args = [(recipes[c.name], str(out_dir / "cells" / c.name), methods, device, data_path) for c in todo]
    t0 = time.perf_counter()
    _run_cells(args, [c.name for c in todo], jobs, progress, len(cells))
    if todo:
        _log_timing(out_dir, time.perf_counter() - t0, len(todo), jobs)
    rows = sweep_rows(out_dir, cells, list(axes))
    path = out_dir / "sweep.csv"
    from .evaluation import rows_to_csv

    atomic_write_bytes(path, rows_to_csv([*CSV_COLUMNS[:1], *axes, *CSV_COLUMNS[1:]], rows))
    return path


def _claim(out_dir: Path, recipe: Recipe, axes: Mapping[str, Sequence[Any]], seeds: Sequence[int],
           methods: Sequence[str] | None) -> None:
    """Write ``sweep.json``, or refuse a directory whose ``sweep.json`` describes another sweep."""
    record = {"recipe": recipe.to_dict(), "recipe_source": recipe.source, "axes": {k: list(v) for k, v in axes.items()},
              "seeds": list(seeds), "methods": list(methods) if methods is not None else None}
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
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

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
    from .recipes import load_recipe_data
    from .train.run import run_pipeline

    run_pipeline(recipe, load_recipe_data(recipe, data_path), cell_dir, device=device, resume=True, progress=False,
                 data_path=data_path, methods=methods)


def sweep_rows(out_dir: str | Path, cells: Iterable[SweepCell], axes: Sequence[str]) -> list[list[Any]]:
    """Tidy rows ``[cell, *axis values, seed, method, setting, metric, value]`` of the finished
    cells; a setting is a case name, ``complete``, ``avg`` or ``rate=0.3``."""
    rows: list[list[Any]] = []
    for cell in cells:
        path = Path(out_dir) / "cells" / cell.name / CELL_DONE
        if not path.is_file():
            continue
        values = cell.as_dict()
        head = [cell.name, *[_literal(values[a]) for a in axes], cell.seed]
        for method, result in json.loads(path.read_text())["results"].items():
            settings = {**result["cases"], **{f"rate={r}": m for r, m in result.get("rates", {}).items()}}
            for setting, metrics in settings.items():
                rows += [[*head, method, setting, metric, value] for metric, value in metrics.items()]
    return rows
